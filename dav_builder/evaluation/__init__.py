"""Evaluation on the public benchmarks: readers of each set in its official layout, the protocol
(the paper's and its switches), the benchmark runner and its tables."""
