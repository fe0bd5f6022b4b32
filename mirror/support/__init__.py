"""Small helpers with one job each, used across the package: safe file operations, bounded
reply bodies, JSON from elsewhere, running coroutines together, times as registries write them."""
