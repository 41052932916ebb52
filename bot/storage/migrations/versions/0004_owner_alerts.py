"""alert_events and alert_owners: owner alerts (feeds paused, failing, recovered; chats paused; chat APIs down)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 19:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'alert_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=40), nullable=False),
        sa.Column('subject', sa.String(length=500), nullable=False),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_events')),
    )
    with op.batch_alter_table('alert_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_events_created_at'), ['created_at'], unique=False)
    op.create_table(
        'alert_owners',
        sa.Column('owner', sa.String(length=100), nullable=False),
        sa.Column('cursor', sa.Integer(), nullable=False),
        sa.Column('last_sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_summary_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('muted_until', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('owner', name=op.f('pk_alert_owners')),
    )


def downgrade() -> None:
    op.drop_table('alert_owners')
    with op.batch_alter_table('alert_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_events_created_at'))
    op.drop_table('alert_events')
