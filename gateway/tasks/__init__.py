"""Asynchronous jobs: submit now, run on a worker, fetch the result later.

`queue.TaskQueue` and `queue.ResultStore` are the interfaces; `memory` (the
embedded default) and `redis_queue` (Redis Streams, for scale-out) implement
the first, `archive` the second (local data dir or S3). `states` is the task
state machine, `worker` runs tasks, `service` is the gRPC edge.
"""
