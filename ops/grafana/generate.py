#!/usr/bin/env python3
"""Writes idempotency-dashboard.json beside this script: a Grafana dashboard over the
series the crates export with feature `metrics` (docs/telemetry.md). Edit the panels
here and run it again; examples/prometheus/tests/ops.rs checks every series it queries
is one the crates emit."""
import json
import os

def panel(i, title, exprs, unit="short", desc=""):
    return {
        "id": i, "type": "timeseries", "title": title, "description": desc,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": 0 if i % 2 else 12, "y": ((i - 1) // 2) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [{"refId": chr(65 + n), "expr": e, "legendFormat": l} for n, (e, l) in enumerate(exprs)],
    }

panels = [
    panel(1, "Key options lost (evictions)", [
        ('sum by (catalog, kind) (rate(idempotency_catalog_removals_total{cause="capacity"}[5m]))', "{{catalog}} {{kind}} evicted"),
        ('sum(rate(idempotency_sdk_batch_items_without_options_total[5m]))', "batch items without options"),
    ], "ops", "Each eviction is a key whose key and scope may still have been needed; the WARN lines name the bound to raise."),
    panel(2, "Releases (expected)", [
        ('sum by (catalog, kind) (rate(idempotency_catalog_removals_total{cause="released"}[5m]))', "{{catalog}} released"),
    ], "ops", "Ends of runs and batches, and of free keys' retention: not losses."),
    panel(3, "Catalog memory against its budget", [
        ('idempotency_catalog_bytes', "{{catalog}} bytes"),
        ('idempotency_catalog_max_bytes', "{{catalog}} budget"),
    ], "bytes"),
    panel(4, "Entries, capacity, ceiling and reserved room", [
        ('idempotency_catalog_entries', "{{catalog}} entries"),
        ('idempotency_catalog_capacity_entries', "{{catalog}} capacity"),
        ('idempotency_catalog_max_capacity_entries', "{{catalog}} ceiling"),
        ('idempotency_catalog_reserved_entries', "{{catalog}} reserved"),
    ]),
    panel(5, "Lookups", [
        ('sum by (catalog) (rate(idempotency_catalog_hits_total[5m]))', "{{catalog}} hits"),
        ('sum by (catalog) (rate(idempotency_catalog_misses_total[5m]))', "{{catalog}} misses"),
        ('sum by (catalog) (rate(idempotency_catalog_registrations_total[5m]))', "{{catalog}} registrations"),
        ('sum by (catalog) (rate(idempotency_catalog_replacements_total[5m]))', "{{catalog}} replacements"),
    ], "ops"),
    panel(6, "Redis faults and unshared registrations (fleet mode)", [
        ('sum by (fault) (rate(idempotency_catalog_faults_total[5m]))', "{{fault}}"),
        ('sum(rate(idempotency_catalog_unshared_total[5m]))', "unshared"),
    ], "ops"),
    panel(7, "Batches and answers", [
        ('sum(rate(idempotency_sdk_batch_items_total[5m]))', "batch items"),
        ('sum(rate(idempotency_sdk_cached_answers_total[5m]))', "cached answers"),
    ], "ops"),
    panel(8, "Payload mismatches", [
        ('sum(rate(idempotency_sdk_payload_mismatches_total[5m]))', "same key, another payload"),
        ('sum by (catalog) (rate(idempotency_catalog_listener_panics_total[5m]))', "{{catalog}} listener panics"),
    ], "ops"),
]

dashboard = {
    "title": "Idempotency keys", "uid": "idempotency-keys", "schemaVersion": 39, "version": 1,
    "editable": True, "time": {"from": "now-6h", "to": "now"}, "refresh": "1m", "tags": ["idempotency"],
    "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}]},
    "annotations": {"list": []},
    "panels": panels,
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "idempotency-dashboard.json")
with open(out, "w") as f:
    f.write(json.dumps(dashboard, indent=2) + "\n")
