"""Ingestion: what devices publish, validated, stored once, acknowledged, and counted.

- ``ingestor``: the :class:`Ingestor`, which queues messages from the MQTT thread and batches them;
- ``batch``: one batch: validate, enrol new devices, store each event once, acknowledge;
- ``writer``: the child process that runs batches so the worker's main process only reads MQTT;
- ``deadletters``: the refused messages, kept in a bounded table for operators;
- ``stats``: the counters and distributions that ``/stats`` and ``/metrics`` show.

Nothing is imported here: the writer process loads ``writer`` and ``batch``, not the ingest thread.
"""

__all__ = ["batch", "deadletters", "ingestor", "stats", "writer"]
