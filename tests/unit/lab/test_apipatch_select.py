"""Patch formats and selectors of the stand-in kube-apiserver, against the RFC examples and kube's selector syntax."""

from __future__ import annotations

import pytest

from vhostplug.lab.apipatch import PatchError, json_patch, merge_patch
from vhostplug.lab.apiselect import SelectorError, field_selector, label_selector


def test_merge_patch_rfc7386_examples() -> None:
    target = {"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"}, "tags": ["example", "sample"]}
    patch = {"title": "Hello!", "phoneNumber": "+01-123-456-7890", "author": {"familyName": None}, "tags": ["example"]}
    assert merge_patch(target, patch) == {
        "title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"], "phoneNumber": "+01-123-456-7890"}  # fmt: skip
    assert target["author"] == {"givenName": "John", "familyName": "Doe"}  # input untouched
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch(["a", "b"], {"a": "c"}) == {"a": "c"}


def test_json_patch_rfc6902_operations() -> None:
    doc = {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}, "a/b": [1, 2]}
    out = json_patch(doc, [
        {"op": "move", "from": "/foo/waldo", "path": "/qux/thud"},
        {"op": "copy", "from": "/qux/corge", "path": "/foo/corge"},
        {"op": "replace", "path": "/a~1b/0", "value": 9},
        {"op": "add", "path": "/a~1b/1", "value": 5},
        {"op": "test", "path": "/a~1b", "value": [9, 5, 2]},
    ])  # fmt: skip
    assert out == {
        "foo": {"bar": "baz", "corge": "grault"},
        "qux": {"corge": "grault", "thud": "fred"},
        "a/b": [9, 5, 2],
    }
    assert doc["foo"]["waldo"] == "fred"
    for bad in (
        [{"op": "remove", "path": "/nope"}],
        [{"op": "replace", "path": "/foo/nope", "value": 1}],
        [{"op": "add", "path": "/a~1b/7", "value": 1}],
        [{"op": "add", "path": "/a~1b/01", "value": 1}],
        [{"op": "test", "path": "/foo/bar", "value": "other"}],
        [{"op": "frobnicate", "path": "/foo"}],
        [{"op": "add", "path": "foo", "value": 1}],
        [{"op": "add", "path": "/foo"}],
        {"op": "add"},
    ):
        with pytest.raises(PatchError):
            json_patch(doc, bad)


def _obj(labels: dict[str, str], **spec: object) -> dict[str, object]:
    return {"metadata": {"labels": labels}, "spec": spec}


def test_label_selectors() -> None:
    a, b, c = _obj({"app": "x", "tier": "fe"}), _obj({"app": "y"}), _obj({})
    cases = {
        "app=x": [a], "app==x": [a], "app!=x": [b, c], "app": [a, b], "!app": [c],
        "app in (x, y),tier": [a], "app notin (x)": [b, c], "": [a, b, c],
    }  # fmt: skip
    for text, want in cases.items():
        match = label_selector(text)
        assert [o for o in (a, b, c) if match(o)] == want, text
    with pytest.raises(SelectorError):
        label_selector("app in x")


def test_field_selectors() -> None:
    a, b = _obj({}, nodeName="n1", hostNetwork=True), _obj({}, nodeName="n2")
    assert [o for o in (a, b) if field_selector("spec.nodeName=n1")(o)] == [a]
    assert [o for o in (a, b) if field_selector("spec.nodeName!=n1")(o)] == [b]
    assert [o for o in (a, b) if field_selector("spec.hostNetwork=true")(o)] == [a]
    assert [o for o in (a, b) if field_selector("spec.missing=")(o)] == [a, b]
    with pytest.raises(SelectorError):
        field_selector("spec.nodeName in (n1)")
