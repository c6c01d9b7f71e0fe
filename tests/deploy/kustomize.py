"""A minimal kustomize renderer for the base in deploy/k8s, so CI needs no kustomize binary.

It implements what the base uses and nothing more: ``resources`` (YAML files, or folders
holding a kustomization, in order) and ``images`` (``newName`` / ``newTag`` / ``digest`` on
every container and init container whose image name matches). Any other field of a
kustomization is refused, so it can never silently render something else than
``kubectl kustomize`` would; ``test_k8s.py`` compares the two where kubectl is installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "images"}
IMAGE_FIELDS = {"name", "newName", "newTag", "digest"}

Manifest = dict[str, Any]


class KustomizeError(ValueError):
    """The kustomization uses something this renderer does not implement, or is invalid."""


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """``name[:tag][@digest]`` -> (name, tag, digest); a registry port is not a tag."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest or None


def _containers(node: Any) -> Iterator[dict[str, Any]]:
    """Every container and init container, wherever a resource holds a pod spec."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (item for item in value if isinstance(item, dict))
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def _set_images(manifests: list[Manifest], images: list[dict[str, Any]]) -> None:
    for rule in images:
        unknown = set(rule) - IMAGE_FIELDS
        if unknown or "name" not in rule:
            raise KustomizeError(f"images entry {rule!r}: needs name; unsupported {unknown}")
        for manifest in manifests:
            for container in _containers(manifest):
                name, tag, digest = split_image(str(container.get("image", "")))
                if name != rule["name"]:
                    continue
                name = rule.get("newName", name)
                if "digest" in rule:
                    tag, digest = None, str(rule["digest"])
                elif "newTag" in rule:
                    tag, digest = str(rule["newTag"]), None
                container["image"] = (
                    name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
                )


def render(directory: Path) -> list[Manifest]:
    """The manifests ``kubectl kustomize directory`` would print, in resource order."""
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"no kustomization.yaml in {directory}")
    kustomization = yaml.safe_load(path.read_text())
    if not isinstance(kustomization, dict):
        raise KustomizeError(f"{path}: not a mapping")
    unknown = set(kustomization) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{path}: fields this renderer does not implement: {sorted(unknown)}")
    if kustomization.get("kind", "Kustomization") != "Kustomization":
        raise KustomizeError(f"{path}: kind must be Kustomization")

    manifests: list[Manifest] = []
    for resource in kustomization.get("resources", []):
        target = (directory / resource).resolve()
        if target.is_dir():
            manifests += render(target)
        elif target.is_file():
            for document in yaml.safe_load_all(target.read_text()):
                if document is None:
                    continue
                if not isinstance(document, dict) or "kind" not in document:
                    raise KustomizeError(f"{target}: a document that is not a resource")
                manifests.append(document)
        else:
            raise KustomizeError(f"{path}: resource {resource!r} does not exist")

    seen: set[tuple[str, str, str]] = set()
    for manifest in manifests:
        key = (manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"])
        if key in seen:
            raise KustomizeError(f"{path}: {key} is defined twice")
        seen.add(key)
    _set_images(manifests, kustomization.get("images", []))
    return manifests
