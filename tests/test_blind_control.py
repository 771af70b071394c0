"""`ablate eval` of something that is neither a checkpoint folder nor a run is one clear error.

The blind control itself (every image blanked, image-dependent categories at chance, the control logged to the
run) is checked on the mechanism study's own lynx run in tests/test_mechanisms.py, so no extra model is trained
for it.
"""

from pathlib import Path

import pytest

from harness.rescore import evaluate_saved
from harness.tracking import Store


def test_eval_of_a_missing_target_is_a_clear_error(tmp_path):
    from harness.errors import AblateError

    store = Store(Path(tmp_path))
    store.create()
    with pytest.raises(AblateError, match="neither a checkpoint folder"):
        evaluate_saved(store, "no-such-run")
