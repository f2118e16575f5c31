# edrive in Nautilus (43 and later, python3-nautilus 4.0): installed by
# `edrive desktop install`, removed by `edrive desktop uninstall`.
#
# Inside an edrive mount (a `fuse.edrive` entry of /proc/self/mountinfo) files and
# folders get the menu items "Always keep on this device", "Free up space", "Online only"
# and "Sync status", which run edrive-action (it shows errors in a dialog or
# notification), and an emblem for their state, read from the xattrs `user.edrive.state`
# and `user.edrive.pinned` (answered by the daemon from its metadata: no download).
# Anything else gets nothing from here.

import os
import time

import gi

gi.require_version("Nautilus", "4.0")
from gi.repository import GLib, GObject, Nautilus  # noqa: E402

ACTION = "@ACTION@"  # the action script; set by `edrive desktop install`

# (verb of edrive-action, label, tip)
ACTIONS = [
    ("pin", "Always keep on this device",
     "Download now and keep it on this device, also offline"),
    ("free", "Free up space",
     "Remove the downloaded content; it stays listed and downloads again when opened"),
    ("online-only", "Online only",
     "Stop keeping it on this device and remove the downloaded content"),
    ("status", "Sync status", "Show what edrive knows of it"),
]

# user.edrive.state -> emblem icon name (see README "Desktop").
EMBLEMS = {
    "pinned": "emblem-default",
    "hydrated": "emblem-ok-symbolic",
    "online-only": "emblem-web",
    "partial": "emblem-synchronizing-symbolic",
    "dirty": "emblem-synchronizing-symbolic",
    "uploading": "emblem-synchronizing-symbolic",
    "conflict": "emblem-important",
    "locked": "emblem-important",
    "no-space": "emblem-important",
    "error": "emblem-important",
    "local-only": "emblem-readonly",
}
FOLDER_EMBLEMS = {k: v for k, v in EMBLEMS.items()
                  if k not in ("hydrated", "online-only", "partial")}


def _unescape(field):
    """Decodes the octal escapes (\\040 for a space) of /proc/self/mountinfo."""
    out = bytearray()
    raw = field.encode("utf-8", "surrogateescape")
    i = 0
    while i < len(raw):
        if raw[i] == 0x5C and i + 3 < len(raw) and raw[i + 1:i + 4].isdigit():
            out.append(int(raw[i + 1:i + 4], 8) & 0xFF)
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "surrogateescape")


_cached = (None, [])


def edrive_mounts():
    """The mountpoints of the edrive mounts this process sees (read again after 2 s)."""
    global _cached
    now = time.monotonic()
    if _cached[0] is not None and now - _cached[0] < 2.0:
        return _cached[1]
    mounts = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                left, sep, right = line.partition(" - ")
                fields = left.split()
                if sep and len(fields) > 4 and right.split()[:1] == ["fuse.edrive"]:
                    mounts.append(_unescape(fields[4]))
    except OSError:
        pass
    _cached = (now, mounts)
    return mounts


def local_path(info):
    """The local path of a Nautilus.FileInfo, or None for other locations."""
    if info.get_uri_scheme() != "file":
        return None
    location = info.get_location()
    return location.get_path() if location is not None else None


def inside(path, mounts):
    """Whether `path` is one of `mounts` or below one."""
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)


def run_action(verb, paths, infos):
    """Runs edrive-action in the background; refreshes the emblems when it ends."""
    try:
        pid, _, _, _ = GLib.spawn_async(
            [ACTION, verb, *paths], flags=GLib.SpawnFlags.DO_NOT_REAP_CHILD)
    except GLib.Error as e:
        try:
            GLib.spawn_async(["notify-send", "--app-name=edrive", "edrive",
                              "cannot run %s: %s" % (ACTION, e.message)],
                             flags=GLib.SpawnFlags.SEARCH_PATH)
        except GLib.Error:
            pass
        return

    def ended(pid, _status):
        GLib.spawn_close_pid(pid)
        for info in infos:
            info.invalidate_extension_info()

    GLib.child_watch_add(GLib.PRIORITY_DEFAULT, pid, ended)


class EdriveExtension(GObject.GObject, Nautilus.MenuProvider, Nautilus.InfoProvider):
    def __init__(self):
        super().__init__()

    def _items(self, infos, suffix):
        mounts = edrive_mounts()
        paths = [local_path(i) for i in infos]
        if not paths or not mounts or any(p is None or not inside(p, mounts) for p in paths):
            return []
        items = []
        for verb, label, tip in ACTIONS:
            item = Nautilus.MenuItem(name="Edrive::%s%s" % (verb, suffix), label=label, tip=tip)
            item.connect("activate", lambda _item, v=verb: run_action(v, paths, infos))
            items.append(item)
        return items

    def get_file_items(self, files):
        return self._items(list(files), "")

    def get_background_items(self, current_folder):
        return self._items([current_folder], "-folder")

    def update_file_info(self, file):
        path = local_path(file)
        if path is None or not inside(path, edrive_mounts()):
            return Nautilus.OperationResult.COMPLETE
        try:
            state = os.getxattr(path, "user.edrive.state").decode("utf-8", "replace")
            pinned = os.getxattr(path, "user.edrive.pinned") == b"1"
        except OSError:
            return Nautilus.OperationResult.COMPLETE
        if file.is_directory():
            # A folder's "hydrated" only means its listing is known: it gets an emblem
            # for a pin or for what needs attention, not for its listing.
            emblem = "emblem-default" if pinned else FOLDER_EMBLEMS.get(state)
        else:
            emblem = EMBLEMS.get(state)
        if emblem:
            file.add_emblem(emblem)
        return Nautilus.OperationResult.COMPLETE
