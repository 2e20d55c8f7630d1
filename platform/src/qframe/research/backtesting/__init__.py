"""Backtesting: strategies, kernels, distributed engine and analytics."""
