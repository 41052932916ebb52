"""sent_stories.coverage and sent_stories.outbox_id: what a chat was shown of a story, and the part it went in

A substantial update is sent as a reply to that part's message (follow-ups, bot/pipeline/followups.py). Rows
from before have NULL: their updates go as items of the next digest, as before.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sent_stories', schema=None) as batch_op:
        batch_op.add_column(sa.Column('coverage', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('outbox_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_sent_stories_outbox_id_outbox'), 'outbox', ['outbox_id'], ['id'],
                                    ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('sent_stories', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_sent_stories_outbox_id_outbox'), type_='foreignkey')
        batch_op.drop_column('outbox_id')
        batch_op.drop_column('coverage')
