"""The on-disk dataset format: schema, tar shards, writer, reader, validation, label side-cars, statistics.

Nothing here imports Ray or torch: ``wamdata validate`` and ``inspect`` stay fast.
"""
