"""Numbered schema migrations. Append only: never edit a migration that has shipped."""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "facts: nodes, workloads, namespaces, gpu usage, ingest log",
        [
            """
            CREATE TABLE nodes (
                node_id VARCHAR PRIMARY KEY,
                provider VARCHAR,
                region VARCHAR,
                zone VARCHAR,
                instance_type VARCHAR,
                capacity_type VARCHAR,
                gpu_model VARCHAR,
                gpu_count INTEGER,
                cpu_cores DOUBLE,
                memory_gib DOUBLE,
                mig_strategy VARCHAR,
                gpu_replicas INTEGER,
                util_signal VARCHAR,
                resource_id VARCHAR,
                labels MAP(VARCHAR, VARCHAR),
                source VARCHAR
            )
            """,
            """
            CREATE TABLE workloads (
                workload_id VARCHAR PRIMARY KEY,
                kind VARCHAR,
                namespace VARCHAR,
                name VARCHAR,
                node_id VARCHAR,
                controller VARCHAR,
                start_ms BIGINT,
                end_ms BIGINT,
                gpu_request DOUBLE,
                gpu_resource VARCHAR,
                cpu_request DOUBLE,
                mem_request_gib DOUBLE,
                cpu_usage DOUBLE,
                mem_usage_gib DOUBLE,
                labels MAP(VARCHAR, VARCHAR),
                source VARCHAR
            )
            """,
            """
            CREATE TABLE namespaces (
                namespace VARCHAR PRIMARY KEY,
                labels MAP(VARCHAR, VARCHAR)
            )
            """,
            # One row per GPU (or MIG instance) sample and holder; the unheld part of a
            # sample is a row with a NULL holder. held_* are milliseconds x share, so the
            # rows of one sample sum to its duration under either policy; used is busy ms.
            """
            CREATE TABLE gpu_usage (
                ts_ms BIGINT NOT NULL,
                node_id VARCHAR NOT NULL,
                gpu_id VARCHAR NOT NULL,
                workload_id VARCHAR,
                held_req DECIMAL(18, 6) NOT NULL,
                held_use DECIMAL(18, 6) NOT NULL,
                used DECIMAL(18, 6) NOT NULL
            )
            """,
            """
            CREATE TABLE ingest_log (
                input_hash VARCHAR PRIMARY KEY,
                kind VARCHAR NOT NULL,
                path VARCHAR,
                node_id VARCHAR,
                start_ms BIGINT,
                end_ms BIGINT,
                rows BIGINT,
                ingested_at TIMESTAMP
            )
            """,
        ],
    ),
]
