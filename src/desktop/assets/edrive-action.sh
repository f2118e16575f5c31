#!/bin/sh
# edrive's file-manager actions, installed by `edrive desktop install` (and removed by
# `edrive desktop uninstall`): Nautilus, Thunar and Dolphin run
#     edrive-action pin|free|online-only|status PATH...
# This runs the edrive command and shows what went wrong in a dialog (zenity, kdialog)
# or a notification (notify-send), never failing silently.

EDRIVE=@EDRIVE@
if [ ! -x "$EDRIVE" ]; then
    EDRIVE=$(command -v edrive 2>/dev/null || true)
fi

have() { command -v "$1" >/dev/null 2>&1; }

# show KIND TITLE TEXT: KIND is "error" or "info". A dialog where there is a display and
# a dialog program, else a notification, else stderr and the system log.
show() {
    kind=$1 title=$2 text=$3
    if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
        if [ "${KDE_FULL_SESSION:-}" = true ] && have kdialog; then
            kdialog_show "$kind" "$title" "$text" && return 0
        fi
        if have zenity; then
            zenity "--$kind" --title="$title" --no-markup --text="$text" 2>/dev/null
            # 0: closed with OK, 1: closed otherwise; anything else: no dialog appeared.
            [ $? -le 1 ] && return 0
        fi
        if have kdialog; then
            kdialog_show "$kind" "$title" "$text" && return 0
        fi
    fi
    if have notify-send; then
        icon=dialog-information
        [ "$kind" = error ] && icon=dialog-error
        notify-send --app-name=edrive --icon="$icon" -- "$title" "$text" && return 0
    fi
    if [ -n "${DISPLAY:-}" ] && have xmessage; then
        xmessage -center "$title: $text" && return 0
    fi
    printf '%s: %s\n' "$title" "$text" >&2
    have logger && logger -t edrive -- "$title: $text"
    return 0
}

kdialog_show() {
    if [ "$1" = error ]; then
        kdialog --title "$2" --error "$3" 2>/dev/null
    else
        kdialog --title "$2" --msgbox "$3" 2>/dev/null
    fi
    [ $? -le 1 ]
}

# notify TITLE TEXT: a passing notification (no dialog) where notify-send exists.
notify() {
    have notify-send && notify-send --app-name=edrive --icon=emblem-default -- "$1" "$2"
    return 0
}

# run TITLE ARGS...: runs `edrive ARGS...`; shows its last lines if it fails.
run() {
    title=$1
    shift
    if out=$("$EDRIVE" "$@" 2>&1); then
        last=$(printf '%s\n' "$out" | tail -n 1)
        return 0
    fi
    show error "$title" "$(printf '%s\n' "$out" | tail -n 10)"
    return 1
}

if [ $# -lt 2 ]; then
    show error edrive "usage: edrive-action pin|free|online-only|status PATH..."
    exit 2
fi
verb=$1
shift
if [ -z "$EDRIVE" ]; then
    show error edrive "the edrive program is not found (it was @EDRIVE_TEXT@ when the menus were installed): install it again and run 'edrive desktop install'"
    exit 1
fi

case $verb in
pin)
    start=$(date +%s)
    run "Always keep on this device" pin -- "$@" || exit 1
    # A pin that took a while ends with a notification; a quick one stays quiet.
    if [ $(($(date +%s) - start)) -ge 5 ]; then
        notify "Always keep on this device" "$last"
    fi
    ;;
free)
    run "Free up space" free -- "$@" || exit 1
    ;;
online-only)
    run "Online only" unpin -- "$@" || exit 1
    run "Online only" free -- "$@" || exit 1
    ;;
status)
    text=
    kind=info
    for p in "$@"; do
        if ! o=$("$EDRIVE" status -- "$p" 2>&1); then
            kind=error
        fi
        text="$text$o
"
    done
    show "$kind" "Sync status" "$text"
    [ "$kind" = info ] || exit 1
    ;;
*)
    show error edrive "unknown action: $verb"
    exit 2
    ;;
esac
