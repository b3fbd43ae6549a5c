"""The SQL of the PostgreSQL run-state backend: its tables and the statements it runs."""

from __future__ import annotations

import dataclasses
import operator

from flujo.domain.interfaces import RunRecord, StepRecord

__all__ = [
    "CREATE_RUN",
    "CURRENT_RUN",
    "DELETE_RUN",
    "FINISH_OWNED_NEW",
    "FINISH_OWNED_RUN",
    "INSERT_NEW_RUN",
    "INSERT_STEP",
    "LEASE",
    "NEW_STEP",
    "PRUNE",
    "SCHEMA",
    "UPDATE_OWNED_RUN",
    "UPSERT_RUN",
    "step_row",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS flujo_runs (
    run_id TEXT PRIMARY KEY,
    pipeline_name TEXT NOT NULL,
    pipeline_version TEXT NOT NULL,
    status TEXT NOT NULL,
    step_index INTEGER NOT NULL,
    input BYTEA NOT NULL,
    context BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    error TEXT,
    pause_message TEXT,
    schema_version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS flujo_runs_by_update ON flujo_runs (updated_at);
-- No foreign key to flujo_runs: its check locks the run's row on every checkpoint (a
-- tuple lock, so a WAL record), which cost 30-45 µs of a ~100 µs round trip. The
-- statements that delete or make a run delete its steps themselves instead.
CREATE TABLE IF NOT EXISTS flujo_steps (
    run_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    success BOOLEAN NOT NULL,
    result BYTEA NOT NULL,
    context BYTEA NOT NULL,
    recorded_at DOUBLE PRECISION NOT NULL,
    pending BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (run_id, idx)
);
-- Tables made before step records could be pending, or runs had leases and owed saves,
-- get the columns in place (nobody owns an older run). Only a missing column is added:
-- ALTER TABLE locks the table out even when IF NOT EXISTS finds the column, which would
-- deadlock with the runs another backend writes meanwhile.
DO $$
DECLARE
    wanted TEXT[][] := ARRAY[
        ['flujo_steps', 'pending', 'BOOLEAN NOT NULL DEFAULT FALSE'],
        ['flujo_runs', 'owner', 'TEXT'],
        ['flujo_runs', 'lease_until', 'DOUBLE PRECISION'],
        ['flujo_runs', 'owed', 'BYTEA']
    ];
    i INTEGER;
    fk TEXT;
BEGIN
    FOR i IN 1 .. array_length(wanted, 1) LOOP
        IF NOT EXISTS (
            SELECT 1 FROM information_schema.columns
            WHERE table_schema = current_schema()
              AND table_name = wanted[i][1] AND column_name = wanted[i][2]
        ) THEN
            EXECUTE format(
                'ALTER TABLE %I ADD COLUMN %I ' || wanted[i][3], wanted[i][1], wanted[i][2]
            );
        END IF;
    END LOOP;
    -- A table made when steps had a foreign key to their run loses it (see above).
    SELECT conname INTO fk FROM pg_constraint
    WHERE conrelid = to_regclass('flujo_steps') AND contype = 'f' LIMIT 1;
    IF fk IS NOT NULL THEN
        EXECUTE format('ALTER TABLE flujo_steps DROP CONSTRAINT %I', fk);
    END IF;
END $$;
"""

# Columns in RunRecord's field order, so a row is rows.run_row(run).
_RUN_COLUMNS = ", ".join(field.name for field in dataclasses.fields(RunRecord))
_RUN_FIELDS = [field.name for field in dataclasses.fields(RunRecord)]
_INSERT_RUN = (
    f"INSERT INTO flujo_runs ({_RUN_COLUMNS})"
    f" VALUES ({', '.join(f'${n}' for n in range(1, len(_RUN_FIELDS) + 1))})"
)
UPSERT_RUN = (
    f"{_INSERT_RUN} ON CONFLICT (run_id) DO UPDATE SET"
    f" {', '.join(f'{name} = EXCLUDED.{name}' for name in _RUN_FIELDS[1:])}"
)
# The whole header, written only while the owner (the last parameter) still holds the run.
UPDATE_OWNED_RUN = (
    "UPDATE flujo_runs SET"
    f" {', '.join(f'{name} = ${n}' for n, name in enumerate(_RUN_FIELDS[1:], start=2))}"
    f" WHERE run_id = $1 AND owner = ${len(_RUN_FIELDS) + 1}"
)
# A header whose id is free: an insert, cheaper to plan than CREATE_RUN (~70 µs). Steps
# left under the id with no header (a stale owner's checkpoint after its run was
# deleted: there is no foreign key to refuse it) are deleted as the header is made.
INSERT_NEW_RUN = (
    f"WITH made AS ({_INSERT_RUN} ON CONFLICT (run_id) DO NOTHING RETURNING 1),"
    " orphans AS (DELETE FROM flujo_steps WHERE run_id = $1 AND EXISTS (SELECT 1 FROM made))"
    " SELECT 1 FROM made"
)
LEASE = "SELECT status, owner, lease_until FROM flujo_runs WHERE run_id = $1"
_N = len(_RUN_FIELDS)
# A new header in one statement (one round trip, no transaction): the stored run of that
# id is locked, then deleted (its steps with it) when replacing was asked ($N+1) and
# no live lease holds it at $N+2 (the new run's updated_at). The row says what happened:
# made, or not and the stored run's status and lease; made false with no stored run
# means another process created the run meanwhile.
CREATE_RUN = (
    "WITH old AS (SELECT status, owner, lease_until FROM flujo_runs WHERE run_id = $1"
    " FOR UPDATE),"
    " gone AS (DELETE FROM flujo_runs WHERE run_id = $1"
    f" AND ${_N + 1}::boolean AND EXISTS (SELECT 1 FROM old)"
    " AND NOT EXISTS (SELECT 1 FROM old WHERE owner IS NOT NULL"
    f" AND COALESCE(lease_until, 0) > ${_N + 2}::double precision) RETURNING 1),"
    f" made AS ({_INSERT_RUN.replace(' VALUES (', ' SELECT ')[:-1]}"
    " WHERE NOT EXISTS (SELECT 1 FROM old) OR EXISTS (SELECT 1 FROM gone)"
    " ON CONFLICT (run_id) DO NOTHING RETURNING 1)"
    # The replaced run's steps, or steps left with no header (see INSERT_NEW_RUN).
    " , steps AS (DELETE FROM flujo_steps WHERE run_id = $1 AND EXISTS (SELECT 1 FROM made))"
    " SELECT EXISTS (SELECT 1 FROM made) AS made, old.status, old.owner, old.lease_until"
    " FROM (SELECT) AS one LEFT JOIN old ON TRUE"
)
# Columns in StepRecord's field order, so a row is step_row(step) (astuple, without its deep copy).
step_row = operator.attrgetter(*(field.name for field in dataclasses.fields(StepRecord)))
# A step's first record: a plain insert, 10-15 µs cheaper than INSERT_STEP's upsert.
NEW_STEP = (
    "INSERT INTO flujo_steps (run_id, idx, name, success, result, context, recorded_at, pending)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
)
# A record that may replace one (a pending record committed, a step run again on resume).
INSERT_STEP = (
    f"{NEW_STEP} ON CONFLICT (run_id, idx) DO UPDATE SET"
    " name = EXCLUDED.name, success = EXCLUDED.success, result = EXCLUDED.result,"
    " context = EXCLUDED.context, recorded_at = EXCLUDED.recorded_at,"
    " pending = EXCLUDED.pending"
)
# The last step record and the final header as one statement (one round trip, atomic):
# the header is written only while the owner ($N+1) holds the run, and the record only
# with it. Parameters: the header's fields, the owner, then the record's fields.
_STEP_TYPES = ("text", "int", "text", "boolean", "bytea", "bytea", "double precision", "boolean")
FINISH_OWNED_RUN = (
    f"WITH run AS ({UPDATE_OWNED_RUN} RETURNING 1),"
    " step AS (INSERT INTO flujo_steps"
    " (run_id, idx, name, success, result, context, recorded_at, pending) SELECT "
    + ", ".join(f"${_N + 2 + i}::{kind}" for i, kind in enumerate(_STEP_TYPES))
    + " WHERE EXISTS (SELECT 1 FROM run)"
    + INSERT_STEP[INSERT_STEP.index(" ON CONFLICT") :]
    + ") SELECT EXISTS (SELECT 1 FROM run)"
)
# The same with a plain insert of the record (4-15 µs cheaper, measured), for a step that
# has no record yet: where it has one, the statement fails whole and FINISH_OWNED_RUN runs.
FINISH_OWNED_NEW = FINISH_OWNED_RUN.replace(INSERT_STEP[INSERT_STEP.index(" ON CONFLICT") :], "")
# A run and its steps, in one statement.
DELETE_RUN = (
    "WITH steps AS (DELETE FROM flujo_steps WHERE run_id = $1)"
    " DELETE FROM flujo_runs WHERE run_id = $1"
)
# Old runs in the given statuses and their steps; the row counts the runs.
PRUNE = (
    "WITH gone AS (DELETE FROM flujo_runs WHERE updated_at < $1 AND status = ANY($2::text[])"
    " RETURNING run_id),"
    " steps AS (DELETE FROM flujo_steps WHERE run_id IN (SELECT run_id FROM gone))"
    " SELECT COUNT(*) FROM gone"
)
# A running run's progress lives in its step records (the header is not rewritten per step).
CURRENT_RUN = (
    "SELECT r.run_id, r.pipeline_name, r.pipeline_version, r.status,"
    " CASE WHEN r.status = 'running' THEN COALESCE("
    "(SELECT COUNT(*) FILTER (WHERE s.success AND NOT s.pending) FROM flujo_steps s"
    " WHERE s.run_id = r.run_id),"
    " r.step_index) ELSE r.step_index END AS step_index,"
    " r.input, r.context, r.created_at,"
    " CASE WHEN r.status = 'running' THEN GREATEST(r.updated_at, COALESCE("
    "(SELECT MAX(s.recorded_at) FROM flujo_steps s WHERE s.run_id = r.run_id), 0))"
    " ELSE r.updated_at END AS updated_at,"
    " r.error, r.pause_message, r.schema_version, r.owner, r.lease_until, r.owed"
    " FROM flujo_runs r"
)
