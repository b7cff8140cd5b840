"""cluster: workers, placements, gpu allocations, team quotas; job priority and gpus

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 22:37:08.694311
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column(
            "gpus",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
            comment="GPU indices",
        ),
        sa.Column("slots", sa.Integer(), nullable=False, comment="jobs it runs at once"),
        sa.Column(
            "pool",
            sa.String(length=200),
            nullable=False,
            comment="the cluster it serves (task queue)",
        ),
        sa.Column("queue", sa.String(length=200), nullable=False, comment="its own Celery queue"),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_table(
        "team_quotas",
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("max_running_jobs", sa.Integer(), nullable=True),
        sa.Column("max_gpus", sa.Integer(), nullable=True, comment="GPUs in use at once"),
        sa.Column("max_queued_jobs", sa.Integer(), nullable=True),
        sa.Column("weight", sa.Double(), nullable=False, comment="fair-share weight"),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_team_quotas_team_id_teams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_team_quotas")),
    )
    op.create_table(
        "gpu_allocations",
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("gpu", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(length=200), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_gpu_allocations_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["workers.id"],
            name=op.f("fk_gpu_allocations_worker_id_workers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("host", "gpu", name=op.f("pk_gpu_allocations")),
    )
    op.create_table(
        "placements",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("worker_id", sa.String(length=200), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column(
            "gpus",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_placements_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["workers.id"],
            name=op.f("fk_placements_worker_id_workers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_placements")),
        sa.UniqueConstraint("worker_id", "slot", name=op.f("uq_placements_worker_id_slot")),
    )
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column(
                "max_priority",
                sa.String(length=8),
                server_default="normal",
                nullable=False,
                comment="highest it may submit",
            )
        )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column(
                "pool",
                sa.String(length=200),
                server_default="regimen",
                nullable=False,
                comment="workers that may run it",
            )
        )
        batch.add_column(
            sa.Column("priority", sa.String(length=8), server_default="normal", nullable=False)
        )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("gpus", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column(
                "worker_id", sa.String(length=200), nullable=True, comment="where it runs or ran"
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("worker_id")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("gpus")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("priority")
        batch.drop_column("pool")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("max_priority")
    op.drop_table("placements")
    op.drop_table("gpu_allocations")
    op.drop_table("team_quotas")
    op.drop_table("workers")
