//! Shared helpers of the chasync benchmarks.
