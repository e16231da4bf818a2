"""Numbered schema migrations. Append only: never edit a migration that has shipped."""

from __future__ import annotations

from aifinops.store.rollups import fill_rollups

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
    (
        2,
        "node presence: the per-node roll-up of gpu_usage that gives each node's time per step",
        [
            # One row per node and sample instant (or several, summed): the device-ms of
            # all its GPUs. Written and deleted together with gpu_usage (Store.write_usage,
            # Store.delete_usage), so a scan of it costs a node's presence per step
            # without grouping the per-GPU samples by time.
            """
            CREATE TABLE node_presence (
                node_id VARCHAR NOT NULL,
                ts_ms BIGINT NOT NULL,
                dev DECIMAL(18, 6) NOT NULL
            )
            """,
            """
            INSERT INTO node_presence
            SELECT node_id, ts_ms, sum(held_req) FROM gpu_usage GROUP BY node_id, ts_ms
            """,
        ],
    ),
    (
        3,
        "gpu energy: per-device energy counter, power and memory readings",
        [
            # energy_mj is the device's counter since boot (DCGM TOTAL_ENERGY_CONSUMPTION,
            # NVML total energy): energy in a window is its increase, resets handled there.
            """
            CREATE TABLE gpu_energy (
                ts_ms BIGINT NOT NULL,
                node_id VARCHAR NOT NULL,
                gpu_id VARCHAR NOT NULL,
                energy_mj DOUBLE,
                power_w DOUBLE,
                fb_used_mib DOUBLE,
                source VARCHAR
            )
            """,
        ],
    ),
    (
        4,
        "serving counters: requests, tokens and prefill/decode time per pod and model",
        [
            # Counters as scraped (cumulative since the server started); a window's count is
            # the sum of increases between consecutive samples of a series, resets included.
            """
            CREATE TABLE serving_counters (
                ts_ms BIGINT NOT NULL,
                workload_id VARCHAR,
                server VARCHAR NOT NULL,
                model VARCHAR,
                metric VARCHAR NOT NULL,
                value DOUBLE NOT NULL,
                source VARCHAR
            )
            """,
        ],
    ),
    (
        5,
        "external allocations: cost allocations computed elsewhere (OpenCost)",
        [
            """
            CREATE TABLE external_allocations (
                source VARCHAR NOT NULL,
                name VARCHAR NOT NULL,
                start_ms BIGINT NOT NULL,
                end_ms BIGINT NOT NULL,
                cluster VARCHAR,
                node_id VARCHAR,
                namespace VARCHAR,
                pod VARCHAR,
                container VARCHAR,
                controller VARCHAR,
                labels MAP(VARCHAR, VARCHAR),
                namespace_labels MAP(VARCHAR, VARCHAR),
                gpu_hours DOUBLE,
                gpu_cost DOUBLE,
                cpu_cost DOUBLE,
                ram_cost DOUBLE,
                other_cost DOUBLE,
                total_cost DOUBLE
            )
            """,
        ],
    ),
    (
        6,
        "workload uid: the Kubernetes pod UID, which the node agent finds in cgroups",
        ["ALTER TABLE workloads ADD COLUMN uid VARCHAR"],
    ),
    (
        7,
        "source state: checkpoints and health of the sources `collect` runs",
        [
            """
            CREATE TABLE source_state (
                name VARCHAR PRIMARY KEY,
                kind VARCHAR NOT NULL,
                checkpoint_ms BIGINT,
                last_run_ms BIGINT,
                last_ok_ms BIGINT,
                last_error VARCHAR,
                runs BIGINT NOT NULL DEFAULT 0,
                failures BIGINT NOT NULL DEFAULT 0,
                rows BIGINT NOT NULL DEFAULT 0
            )
            """,
        ],
    ),
    (
        8,
        "price API cache: offers fetched from cloud price APIs, with when",
        [
            """
            CREATE TABLE price_cache (
                provider VARCHAR PRIMARY KEY,
                fetched_ms BIGINT NOT NULL,
                offers VARCHAR NOT NULL
            )
            """,
        ],
    ),
    (
        9,
        "cost lines: bills in FOCUS shape (snake_case, exact decimals, UTC periods, tags map)",
        [
            """
            CREATE TABLE cost_lines (
                provider VARCHAR,
                billing_account_id VARCHAR,
                billing_account_name VARCHAR,
                sub_account_id VARCHAR,
                sub_account_name VARCHAR,
                billing_currency VARCHAR,
                billing_period_start_ms BIGINT,
                billing_period_end_ms BIGINT,
                charge_period_start_ms BIGINT,
                charge_period_end_ms BIGINT,
                charge_category VARCHAR,
                charge_class VARCHAR,
                charge_description VARCHAR,
                service_name VARCHAR,
                service_category VARCHAR,
                region_id VARCHAR,
                resource_id VARCHAR,
                resource_name VARCHAR,
                resource_type VARCHAR,
                sku_id VARCHAR,
                pricing_category VARCHAR,
                pricing_unit VARCHAR,
                pricing_quantity DECIMAL(38, 12),
                consumed_quantity DECIMAL(38, 12),
                consumed_unit VARCHAR,
                billed_cost DECIMAL(38, 12),
                effective_cost DECIMAL(38, 12),
                list_cost DECIMAL(38, 12),
                contracted_cost DECIMAL(38, 12),
                commitment_discount_id VARCHAR,
                tags MAP(VARCHAR, VARCHAR),
                line_hash VARCHAR,
                source VARCHAR
            )
            """,
        ],
    ),
    (
        10,
        "cost line identity: the provider's own id of a line (a CUR's LineItemId and interval)",
        # parts of one delivery are told from a restatement by it (app/bills.py)
        ["ALTER TABLE cost_lines ADD COLUMN line_id VARCHAR"],
    ),
    (
        11,
        "the server: API tokens (hashed, with a role) and the audit log of writes",
        [
            """
            CREATE TABLE api_tokens (
                name VARCHAR PRIMARY KEY,
                role VARCHAR NOT NULL,
                token_hash VARCHAR NOT NULL,
                created_ms BIGINT NOT NULL,
                revoked_ms BIGINT
            )
            """,
            """
            CREATE TABLE audit_log (
                ts_ms BIGINT NOT NULL,
                actor VARCHAR NOT NULL,
                role VARCHAR,
                action VARCHAR NOT NULL,
                target VARCHAR,
                status INTEGER,
                detail VARCHAR
            )
            """,
        ],
    ),
    (
        12,
        "budgets (applied by the CLI or API), their alerts' states and deliveries",
        [
            """
            CREATE TABLE budgets (
                name VARCHAR PRIMARY KEY,
                spec VARCHAR NOT NULL,
                created_ms BIGINT NOT NULL,
                updated_ms BIGINT NOT NULL
            )
            """,
            # one row per budget and period: when its spend was first seen over the limit
            """
            CREATE TABLE budget_periods (
                budget VARCHAR NOT NULL,
                period VARCHAR NOT NULL,
                exceeded_ms BIGINT,
                checked_ms BIGINT,
                PRIMARY KEY (budget, period)
            )
            """,
            # one row per alert key (budget / period / basis / threshold): fired once
            """
            CREATE TABLE budget_alerts (
                key VARCHAR PRIMARY KEY,
                budget VARCHAR NOT NULL,
                period VARCHAR NOT NULL,
                alert VARCHAR NOT NULL,
                basis VARCHAR NOT NULL,
                threshold DECIMAL(9, 3) NOT NULL,
                severity VARCHAR NOT NULL,
                state VARCHAR NOT NULL,
                fired_ms BIGINT NOT NULL,
                resolved_ms BIGINT,
                spend DECIMAL(38, 6),
                event VARCHAR
            )
            """,
            # one row per event and channel, until delivered (retried with backoff)
            """
            CREATE TABLE alert_deliveries (
                key VARCHAR NOT NULL,
                action VARCHAR NOT NULL,
                channel VARCHAR NOT NULL,
                spec VARCHAR NOT NULL,
                event VARCHAR NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_ms BIGINT NOT NULL,
                delivered_ms BIGINT,
                last_error VARCHAR,
                created_ms BIGINT NOT NULL,
                PRIMARY KEY (key, action, channel)
            )
            """,
        ],
    ),
    (
        13,
        "recommendations: each finding by its stable id, with its status and its history",
        [
            """
            CREATE TABLE findings (
                id VARCHAR PRIMARY KEY,
                rule VARCHAR NOT NULL,
                severity VARCHAR NOT NULL,
                scope VARCHAR NOT NULL,
                evidence VARCHAR NOT NULL,
                monthly_saving DECIMAL(38, 6) NOT NULL,
                confidence DECIMAL(9, 6) NOT NULL,
                action VARCHAR NOT NULL,
                patch VARCHAR,
                currency VARCHAR NOT NULL,
                first_seen_ms BIGINT NOT NULL,
                last_seen_ms BIGINT NOT NULL,
                status VARCHAR NOT NULL,
                reason VARCHAR,
                status_ms BIGINT
            )
            """,
            """
            CREATE TABLE finding_events (
                id VARCHAR NOT NULL,
                ts_ms BIGINT NOT NULL,
                event VARCHAR NOT NULL,
                actor VARCHAR,
                detail VARCHAR
            )
            """,
        ],
    ),
    (
        14,
        "anomalies: each anomaly alerted once, by its stable id",
        [
            """
            CREATE TABLE anomaly_alerts (
                id VARCHAR PRIMARY KEY,
                metric VARCHAR NOT NULL,
                scope VARCHAR NOT NULL,
                step_ms BIGINT NOT NULL,
                fired_ms BIGINT NOT NULL,
                event VARCHAR NOT NULL
            )
            """,
        ],
    ),
    (
        15,
        "bill restatements: what a delivery that replaced a billing period changed, and when",
        # one row per charge day, SKU and resource whose EffectiveCost the restatement
        # changed: anomalies on the bills tag those contributors (app/anomalies.py)
        [
            """
            CREATE TABLE bill_restatements (
                provider VARCHAR,
                billing_account_id VARCHAR,
                period_start_ms BIGINT,
                restated_ms BIGINT NOT NULL,
                charge_day_ms BIGINT NOT NULL,
                sku_id VARCHAR,
                resource_id VARCHAR,
                effective_before DECIMAL(38, 12),
                effective_after DECIMAL(38, 12),
                source VARCHAR
            )
            """,
        ],
    ),
    (
        16,
        "leases: which replica of `aifinops serve` runs the periodic jobs, and until when",
        # one row per lease name; a holder renews it before `expires_ms`, and any replica
        # may take it once that has passed (its holder died or stopped)
        [
            """
            CREATE TABLE leases (
                name VARCHAR PRIMARY KEY,
                holder VARCHAR NOT NULL,
                acquired_ms BIGINT NOT NULL,
                expires_ms BIGINT NOT NULL
            )
            """,
        ],
    ),
    (
        17,
        "roll-ups: GPU usage, node presence and GPU energy per UTC hour and day",
        # ts_ms is the hour's (day's) start; the value columns are the sums of the samples
        # in it and `samples` how many raw rows they sum. `holders` names a sample's holders
        # (its workload ids, sorted), so that the request share of time-sliced GPUs, worked
        # per sample, is worked per group of samples with the same holders instead. Several
        # rows per key are allowed (readers sum them; `store compact` merges them). Kept in
        # step with ingest by store/rollups.py; docs/decisions/0020.
        [
            *(
                f"""
                CREATE TABLE gpu_usage_{grain} (
                    ts_ms BIGINT NOT NULL,
                    node_id VARCHAR NOT NULL,
                    gpu_id VARCHAR NOT NULL,
                    holders VARCHAR NOT NULL,
                    workload_id VARCHAR,
                    held_req DECIMAL(38, 6) NOT NULL,
                    held_use DECIMAL(38, 6) NOT NULL,
                    used DECIMAL(38, 6) NOT NULL,
                    samples BIGINT NOT NULL
                )
                """
                for grain in ("hourly", "daily")
            ),
            *(
                f"""
                CREATE TABLE node_presence_{grain} (
                    node_id VARCHAR NOT NULL,
                    ts_ms BIGINT NOT NULL,
                    dev DECIMAL(38, 6) NOT NULL,
                    samples BIGINT NOT NULL
                )
                """
                for grain in ("hourly", "daily")
            ),
            # energy: the counter's increases (and the time between readings) of the
            # readings in the hour, each against the reading before it (store/units.py)
            *(
                f"""
                CREATE TABLE gpu_energy_{grain} (
                    ts_ms BIGINT NOT NULL,
                    node_id VARCHAR NOT NULL,
                    gpu_id VARCHAR NOT NULL,
                    energy_mj DOUBLE NOT NULL,
                    span_ms BIGINT NOT NULL,
                    samples BIGINT NOT NULL
                )
                """
                for grain in ("hourly", "daily")
            ),
            *fill_rollups(),
        ],
    ),
    (
        18,
        "event order: a sequence number on finding events and the audit log",
        # the order of two rows of one instant, which DuckDB's rowid gave and PostgreSQL
        # has no column for: each insert takes the next number
        [
            "CREATE SEQUENCE event_seq",
            "ALTER TABLE finding_events ADD COLUMN seq BIGINT",
            "ALTER TABLE audit_log ADD COLUMN seq BIGINT",
            "UPDATE finding_events SET seq = nextval('event_seq')",
            "UPDATE audit_log SET seq = nextval('event_seq')",
        ],
    ),
]
