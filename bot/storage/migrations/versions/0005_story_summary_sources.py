"""stories.summary_sources: each summary sentence with the member article (outlet, link) it came from

Rows summarized before this have NULL: their digest items show the summary without source marks.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 19:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('stories', schema=None) as batch_op:
        batch_op.add_column(sa.Column('summary_sources', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('stories', schema=None) as batch_op:
        batch_op.drop_column('summary_sources')
