"""`brama.otp` is a public layer: everything it documents is importable from the package."""

from __future__ import annotations

import ast
from pathlib import Path

import brama.otp

OTP = Path(brama.otp.__file__).parent


def _declared(module: str) -> list[str]:
    tree = ast.parse((OTP / f"{module}.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "__all__":
            return list(ast.literal_eval(node.value))
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "__all__":
            assert node.value is not None
            return list(ast.literal_eval(node.value))
    raise AssertionError(f"brama/otp/{module}.py has no __all__")


def test_every_public_name_of_every_module_is_reexported() -> None:
    modules = sorted(p.stem for p in OTP.glob("_*.py") if p.stem != "__init__")
    declared = {name for module in modules for name in _declared(module)}
    assert declared == set(brama.otp.__all__)
    for name in declared:
        assert getattr(brama.otp, name) is not None

