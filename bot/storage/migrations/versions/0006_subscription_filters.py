"""subscriptions.filters: a chat's muted words, muted outlets and required keywords per topic (JSON)

Rows from before have NULL, read as no filters.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 19:55:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('filters', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_column('filters')
