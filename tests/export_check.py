"""Checks exported rule modules against synaptogen's own evaluation (tests/export.rs writes the cases).

    python3 tests/export_check.py numpy|torch CASES.json
    python3 tests/export_check.py compile MODULE.py


CASES.json holds a list of cases: the module's path, the section, every input as float32 bit patterns
with its shape, and the outputs synaptogen computed for every element. Each output must equal
synaptogen's bit for bit (any NaN equals any NaN); outputs that depend on randn() are checked for
shape only. Prints one line per failure and exits 1 if there is any.

`compile` takes a PyTorch module of a rule without randn() and checks that torch.compile (fullgraph,
so no graph breaks) and torch.func's vmap and grad accept each of its sections, with the compiled
function's results equal to the eager ones.
"""

import importlib.util
import json
import sys

import numpy as np


def load(path, cache={}):
    if path not in cache:
        spec = importlib.util.spec_from_file_location("rule_%d" % len(cache), path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cache[path] = module
    return cache[path]


def array(entry):
    bits = np.array(entry["bits"], dtype=np.uint32).view(np.float32)
    return bits.reshape(entry["shape"])


def compile_check(path):
    import inspect

    import torch

    module = load(path)
    for section in ("synapse", "neuron", "prune"):
        function = getattr(module, section, None)
        if function is None:
            continue
        names = list(inspect.signature(function).parameters)
        arguments = {name: torch.rand(4, 5) + 0.5 for name in names}
        eager = function(**arguments)
        compiled = torch.compile(function, fullgraph=True)(**arguments)
        for name, value in eager.items():
            same = torch.equal(value, compiled[name]) or torch.equal(torch.isnan(value), torch.isnan(compiled[name]))
            assert same, "%s(): torch.compile changed %s" % (section, name)
        first, output = names[0], next(iter(eager))
        batched = torch.func.vmap(lambda x: function(**{**arguments, first: x})[output])(torch.rand(3, 4, 5))
        assert batched.shape[0] == 3, batched.shape
        gradient = torch.func.grad(lambda x: function(**{**arguments, first: x})[output].sum())(arguments[first])
        assert gradient.shape == arguments[first].shape, gradient.shape
        print("%s(): torch.compile(fullgraph=True), vmap and grad accept it" % section)


def main():
    if sys.argv[1] == "compile":
        compile_check(sys.argv[2])
        return
    backend, cases_path = sys.argv[1], sys.argv[2]
    if backend == "torch":
        import torch
    with open(cases_path) as f:
        cases = json.load(f)
    failures = 0
    checked = 0
    for case in cases:
        module = load(case["module"])
        function = getattr(module, case["section"])
        inputs = {name: array(entry) for name, entry in case["inputs"].items()}
        if backend == "torch":
            arguments = {name: torch.from_numpy(a.copy()) for name, a in inputs.items()}
        else:
            arguments = inputs
        try:
            got = function(**arguments)
        except Exception as e:  # the failure is the report
            print("%s %s(): raised %r" % (case["label"], case["section"], e))
            failures += 1
            continue
        if sorted(got) != sorted(case["outputs"]):
            print("%s %s(): returned %s, expected %s" % (case["label"], case["section"], sorted(got), sorted(case["outputs"])))
            failures += 1
            continue
        for name, entry in case["outputs"].items():
            value = got[name]
            if backend == "torch":
                value = value.detach().cpu().numpy()
            value = np.asarray(value)
            if value.dtype != np.float32:
                print("%s %s(): %s is %s, not float32" % (case["label"], case["section"], name, value.dtype))
                failures += 1
                continue
            want = array(entry)
            try:
                value = np.broadcast_to(value, want.shape)
            except ValueError:
                print("%s %s(): %s has shape %s, expected %s" % (case["label"], case["section"], name, value.shape, want.shape))
                failures += 1
                continue
            if name in case["random"]:
                continue
            same = (value.view(np.uint32) == want.view(np.uint32)) | (np.isnan(value) & np.isnan(want))
            checked += same.size
            if not same.all():
                at = tuple(int(i) for i in np.argwhere(~same)[0])
                given = {
                    n: float(np.broadcast_to(a, want.shape)[at]) for n, a in inputs.items()
                }
                print(
                    "%s %s(): %s differs at %s: got %r (0x%08x), synaptogen %r (0x%08x); inputs %r"
                    % (
                        case["label"],
                        case["section"],
                        name,
                        at,
                        float(value[at]),
                        int(value.view(np.uint32)[at]),
                        float(want[at]),
                        int(want.view(np.uint32)[at]),
                        given,
                    )
                )
                failures += 1
    print("%d cases, %d values compared, %d failures" % (len(cases), checked, failures))
    sys.exit(1 if failures else 0)


main()
