"""medlung.evaluation is a package (discovery, scoring, figures) that keeps one import path for its users."""

import importlib
import subprocess
import sys

import medlung.evaluation as evaluation


def test_every_public_name_of_the_modules_is_importable_from_medlung_evaluation():
    for name in ("discovery", "scoring", "figures"):
        module = importlib.import_module(f"medlung.evaluation.{name}")
        assert module.__doc__ and "owns" in module.__doc__
        for public in module.__all__:
            assert getattr(evaluation, public) is getattr(module, public), f"{name}.{public}"
            assert public in evaluation.__all__
    for public in evaluation.__all__:
        assert hasattr(evaluation, public), public
    # what the CLI, the bundle configs and the scripts import
    from medlung.evaluation import EvaluationResult, EvaluationUsageError, check_outputs, evaluate, is_model_source  # noqa: F401


def test_importing_evaluation_pulls_in_neither_torch_nor_matplotlib():
    code = "import sys, medlung.evaluation; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.split() == ["False", "False"]
