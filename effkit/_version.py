"""effkit's version, and the versions of what it counts and measures (cache keys carry both)."""
__version__ = "0.2.0"

# Bumped whenever a formula or a counting convention changes: cached counts from before are not reused.
COUNTING_VERSION = 2
# Bumped whenever how a ceiling is measured changes (2: bandwidth became the fastest of three copies;
# 3: best stable rates in rounds, the launch floor, the load while measuring; 4: GPU GEMM peaks sustained, after
# a second of load and in rounds of at least 0.2 s).
MEASUREMENT_VERSION = 4
