"""articles.story_score: how surely an article belongs to its story

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 12:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: articles placed before this column existed have no score (a weak join counts as not core).
    with op.batch_alter_table('articles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('story_score', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('articles', schema=None) as batch_op:
        batch_op.drop_column('story_score')
