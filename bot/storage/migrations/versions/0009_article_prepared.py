"""articles.prepared: topic scores and same-story features computed before placement (scale-out embed tasks)

Rows from before have NULL: their features are computed at placement, as before.

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-02 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('articles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prepared', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('articles', schema=None) as batch_op:
        batch_op.drop_column('prepared')
