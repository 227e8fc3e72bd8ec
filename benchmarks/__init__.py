"""`make bench`: twenty-jobs against Twenty's Node bullmq worker, side by side, scenario by scenario.

benchmarks/run.py is the entry point; benchmarks/README.md has the method.
"""
