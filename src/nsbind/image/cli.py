"""``nsbind image``: inspect, unpack (or load), flatten, ls, rm, gc, save, import."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nsbind.image import Image, ImageConfig, ImageError, Store, StoredImage, flatten, load
from nsbind.image.progress import progress

__all__ = ["add_parser", "parse_platform", "run"]


def add_parser(sub: Any) -> None:
    """Add the ``image`` command to an argparse subparsers object."""
    p = sub.add_parser("image", help="docker save tarballs and OCI layouts")
    isub = p.add_subparsers(dest="image_command", required=True)

    def with_image(name: str, help_: str, aliases: tuple[str, ...] = ()
                   ) -> argparse.ArgumentParser:
        q: argparse.ArgumentParser = isub.add_parser(name, help=help_, aliases=aliases)
        q.add_argument("image", help="a docker save tarball or an OCI layout (dir or tar)")
        q.add_argument("--tag", help="which image of an archive that holds several")
        q.add_argument("--platform", help="os/arch[/variant] of a multi-platform index "
                       "(default: this host)")
        return q

    q = with_image("inspect", "show tags, manifest, config, history and layers")
    q.add_argument("--json", action="store_true", help="print JSON for tools")
    for name, help_ in (("unpack", "unpack the layers into the store (alias: load, "
                         "Docker's name)"),
                        ("flatten", "unpack into one directory, whiteouts applied")):
        q = with_image(name, help_, ("load",) if name == "unpack" else ())
        if name == "flatten":
            q.add_argument("dest", help="a new directory")
        else:
            q.add_argument("--store", help="the store directory (default: /var/lib/nsbind "
                           "for root, ~/.local/share/nsbind otherwise)")
        q.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    for name, help_ in (("ls", "list the images in the store"),
                        ("rm", "forget an image (its layers stay until gc)"),
                        ("gc", "remove layers no image uses")):
        q = isub.add_parser(name, help=help_)
        if name == "rm":
            q.add_argument("ref", help="a tag or a config digest (prefix)")
        if name == "ls":
            q.add_argument("-q", "--quiet", action="store_true", help="only the image ids")
            q.add_argument("--json", dest="ls_json", action="store_true",
                           help="print JSON for tools")
        q.add_argument("--store", help="the store directory")
    q = isub.add_parser("save", help="write stored images as a docker save archive (which "
                        "is an OCI layout too)")
    q.add_argument("images", nargs="+", metavar="IMAGE", help="a tag or a config digest")
    q.add_argument("-o", "--output", required=True, help="the archive to write")
    q.add_argument("--store", help="the store directory")
    q = isub.add_parser("import", help="a one-layer image from a directory or a tar of a "
                        "root filesystem")
    q.add_argument("source", help="a directory or a tarball (plain, gzip or zstd)")
    q.add_argument("name", help="the image's tag")
    q.add_argument("-c", "--change", action="append", default=[], metavar="INSTRUCTION",
                   help="a Dockerfile instruction for the image's config (CMD, ENTRYPOINT, "
                   "ENV, EXPOSE, LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL); repeatable")
    q.add_argument("--store", help="the store directory")


def _list_images(images: list[StoredImage], *, quiet: bool, as_json: bool) -> None:
    """``image ls`` (``nsbind images``): a table as Docker's, the ids alone (``-q``), or
    JSON records."""
    if as_json:
        print(json.dumps([{"Id": i.config_digest, "RepoTags": list(i.tags),
                           "Platform": i.platform, "Layers": list(i.layers)}
                          for i in images], indent=1))
        return
    if quiet:
        for i in images:
            print(i.config_digest[7:19])
        return
    print(f"{'IMAGE ID':<14}{'TAGS':<41}{'PLATFORM':<15}LAYERS")
    for i in images:
        tags = ",".join(i.tags) or "<none>"
        print(f"{i.config_digest[7:19]}  {tags:<40} {i.platform:<14} {len(i.layers)} layers")


def _store_path(args: argparse.Namespace) -> str | None:
    """``--store``, else the main parser's ``--root`` (as the container commands use it),
    else None: the default store."""
    return getattr(args, "store", None) or getattr(args, "root", None)


def parse_platform(text: str | None) -> tuple[str, str] | None:
    """``--platform os/arch[/variant]`` as (os, arch); ImageError naming a bad one."""
    if text is None:
        return None
    parts = text.split("/")
    if not 2 <= len(parts) <= 3 or not all(parts):
        raise ImageError(f"--platform {text[:100]!r}: expected os/arch[/variant]")
    return parts[0], parts[1]


def _shown(text: str) -> str:
    """``text`` for a terminal: an image's strings may hold escape sequences and control
    characters (which would rewrite the screen), shown escaped instead."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _load(args: argparse.Namespace) -> Image:
    return load(args.image, tag=args.tag, platform=parse_platform(args.platform))


def describe(img: Image) -> dict[str, Any]:
    """What ``inspect`` shows, as data."""
    c = img.config
    return {
        "source": img.source,
        "tags": list(img.tags),
        "platform": img.platform,
        "config_digest": img.config_digest,
        "config": {"env": list(c.env), "cmd": list(c.cmd), "entrypoint": list(c.entrypoint),
                   "working_dir": c.working_dir, "user": c.user,
                   "exposed_ports": list(c.exposed_ports), "volumes": list(c.volumes),
                   "labels": c.labels},
        "history": [{"created": h.get("created") or "", "created_by": h.get("created_by") or "",
                     "empty_layer": bool(h.get("empty_layer", False))} for h in img.history],
        "layers": [{"media_type": layer.media_type, "size": layer.size,
                    "digest": layer.digest, "diff_id": layer.diff_id}
                   for layer in img.layers],
    }


def _print_inspect(info: dict[str, Any]) -> None:
    show = _shown
    print(f"Image:      {show(info['source'])}")
    print(f"Tags:       {show(', '.join(info['tags'])) or '<none>'}")
    print(f"Platform:   {show(info['platform'])}")
    print(f"Config:     {info['config_digest']}")
    cfg = info["config"]
    for key, label in (("entrypoint", "Entrypoint"), ("cmd", "Cmd")):
        print(f"{label + ':':<11} {json.dumps(cfg[key])}")
    for key, label in (("working_dir", "WorkingDir"), ("user", "User")):
        if cfg[key]:
            print(f"{label + ':':<11} {show(cfg[key])}")
    print("Env:")
    for var in cfg["env"]:
        print(f"  {show(var)}")
    for key, label in (("exposed_ports", "Ports"), ("volumes", "Volumes")):
        if cfg[key]:
            print(f"{label + ':':<11} {show(', '.join(cfg[key]))}")
    for k, v in sorted(cfg["labels"].items()):
        print(f"Label:      {show(k)}={show(v)}")
    print("History:")
    for h in info["history"]:
        mark = " (empty)" if h["empty_layer"] else ""
        print(f"  {show(h['created'][:19]):<19}  {show(h['created_by'][:100])}{mark}")
    print("Layers (lowest first):")
    for i, layer in enumerate(info["layers"]):
        size = "?" if layer["size"] is None else f"{layer['size']:,}"
        print(f"  {i:>3}  {layer['diff_id']}  {size:>14} B  {layer['media_type']}")


def run(args: argparse.Namespace) -> int:
    """Run an ``image`` subcommand; errors go to stderr with status 1."""
    try:
        return _run(args)
    except (ImageError, OSError) as exc:
        print(f"nsbind image {args.image_command}: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    cmd = "unpack" if args.image_command == "load" else args.image_command
    if cmd == "inspect":
        with _load(args) as img:
            info = describe(img)
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            _print_inspect(info)
        return 0
    if cmd in ("unpack", "flatten"):
        with _load(args) as img:
            sizes = [layer.size for layer in img.layers]
            total = None if None in sizes else sum(s for s in sizes if s is not None)
            with progress(total, len(img.layers), quiet=args.quiet) as bars:
                if cmd == "unpack":
                    dirs = Store(_store_path(args)).unpack(img, on_bytes=bars.on_bytes,
                                                    on_layer=bars.on_layer)
                else:  # streams from the image: no store needed
                    flatten(img, args.dest, on_bytes=bars.on_bytes)
        if cmd == "unpack" and not args.quiet:
            for path in dirs:
                print(path)
        return 0
    store = Store(_store_path(args))
    if cmd in ("save", "import"):
        from nsbind.image.save import import_image, save

        if cmd == "save":
            save(store, args.images, args.output)
        else:
            from nsbind.image.changes import apply_changes

            config = apply_changes(ImageConfig(), args.change)
            print(import_image(store, args.source, args.name, config=config).config_digest)
        return 0
    if cmd == "ls":
        _list_images(store.images(), quiet=args.quiet,
                     as_json=args.ls_json or getattr(args, "json", False))
        return 0
    if cmd == "rm":
        for img_rec in store.remove(args.ref):
            print(f"removed {img_rec.config_digest}")
        return 0
    for diff_id in store.gc():
        print(f"removed layer {diff_id}")
    return 0
