"""chats.last_summary_at: the /summary cooldown in the database, per chat (subscribed or not)

subscriptions.last_summary_at was never written (the cooldown lived in memory): it is dropped.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 12:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('chats', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_summary_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_column('last_summary_at')


def downgrade() -> None:
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_summary_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('chats', schema=None) as batch_op:
        batch_op.drop_column('last_summary_at')
