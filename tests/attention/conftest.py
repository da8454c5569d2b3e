import pytest


@pytest.fixture(autouse=True)
def _triton_plans_forgotten():
    """Each test plans its Triton calls afresh: tests that watch the planning (the block sizes,
    EVEN, the packed heads) must not meet a plan an earlier test left behind."""
    from atenea.attention.backends.triton import forget_plans

    forget_plans()
    yield
