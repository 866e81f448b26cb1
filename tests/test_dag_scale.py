"""A dry-run of `all` on a 200,000-row data set builds a per-shard DAG (its speed: `rhosym bench dag`)."""

import pytest

from rhosym.bench.dag import MODELS, dry_run, job_counts, write_inputs

N_ROWS = 200_000


@pytest.mark.slow
def test_dry_run_of_200k_rows_is_per_shard(tmp_path):
    seconds, proc = dry_run(write_inputs(tmp_path, N_ROWS))
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout + proc.stderr)
    print(f"\n200k-row dry-run of all: {seconds:.1f} s, {counts.get('total')} jobs")
    assert counts["ingest_shard"] == 256  # 200 shards of 1,000 rounded up to a power of two
    assert counts["manifest"] == 1 and counts["split"] == 1
    # per shard, never per structure: the DAG grows with shards and trainings, not with rows
    trainings = counts["train_model"]
    assert trainings >= len(MODELS) * 3  # every model, every seed
    assert counts["total"] < 20 * 256 + 10 * trainings
