"""The runtime (the I/O shell): caches, work queue, writer, member health, leader, metrics."""
