//! The StatusNotifierItem itself (the `ksni` crate): icon, tooltip and status from the
//! mounts' views, and the menu whose entries send [`Action`]s to the panel's loop.

use std::path::PathBuf;

use ksni::menu::{StandardItem, SubMenu};
use ksni::{MenuItem, ToolTip};
use tokio::sync::mpsc::UnboundedSender;

use super::view::{plural, summary, MountView};
use super::Action;

/// A drive that is configured but not mounted, for "Mount…" (issue 24 supplies them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfiguredDrive {
    /// Its name.
    pub name: String,
}

/// The panel icon's state.
pub struct Panel {
    /// The mounts, sorted by mountpoint.
    pub mounts: Vec<MountView>,
    /// Configured drives not mounted now.
    pub unmounted: Vec<ConfiguredDrive>,
    /// Where the shipped icons were written (`IconThemePath`).
    pub icon_dir: String,
    /// Where menu actions go.
    pub actions: UnboundedSender<Action>,
}

fn item(label: impl Into<String>, action: Action) -> MenuItem<Panel> {
    StandardItem {
        label: label.into(),
        activate: Box::new(move |p: &mut Panel| {
            let _ = p.actions.send(action.clone());
        }),
        ..Default::default()
    }
    .into()
}

fn info_line(label: String) -> MenuItem<Panel> {
    StandardItem {
        label,
        enabled: false,
        ..Default::default()
    }
    .into()
}

fn submenu(label: String, submenu: Vec<MenuItem<Panel>>) -> MenuItem<Panel> {
    SubMenu {
        label,
        submenu,
        ..Default::default()
    }
    .into()
}

/// The menu of one mount.
fn mount_menu(m: &MountView) -> Vec<MenuItem<Panel>> {
    let mp: PathBuf = m.mountpoint.clone();
    let mut items = vec![
        item("Open folder", Action::Open(mp.clone())),
        info_line(m.line()),
        MenuItem::Separator,
    ];
    if m.state == "suspended" {
        items.push(item("Resume", Action::Resume(mp.clone())));
    } else {
        items.push(item("Pause", Action::Pause(mp.clone())));
    }
    items.push(item("Sync now", Action::Sync(mp.clone())));
    if !m.conflicts.is_empty() {
        let files = m
            .conflicts
            .iter()
            .map(|path| {
                let choice = |label: &str, choice: &'static str| {
                    item(
                        label,
                        Action::Resolve {
                            mountpoint: mp.clone(),
                            path: path.clone(),
                            choice,
                        },
                    )
                };
                submenu(
                    path.trim_start_matches('/').to_string(),
                    vec![
                        choice("Use local", "use-local"),
                        choice("Use remote", "use-remote"),
                        choice("Keep both", "keep-both"),
                    ],
                )
            })
            .collect();
        items.push(submenu(
            format!("Conflicts ({})…", m.conflicts.len()),
            files,
        ));
    }
    items.push(item("Free up space…", Action::Free(mp.clone())));
    if m.state == "auth-required" {
        items.push(item("Log in again…", Action::Login(mp.clone())));
    }
    items.push(MenuItem::Separator);
    items.push(item("Unmount", Action::Unmount(mp)));
    items
}

impl ksni::Tray for Panel {
    fn id(&self) -> String {
        "edrive".into()
    }

    fn title(&self) -> String {
        "edrive".into()
    }

    fn category(&self) -> ksni::Category {
        ksni::Category::ApplicationStatus
    }

    fn status(&self) -> ksni::Status {
        // With no mount, the icon hides (Passive) unless it offers drives to mount.
        if self.mounts.is_empty() && !self.unmounted.is_empty() {
            return ksni::Status::Active;
        }
        match summary(&self.mounts).look.sni_status() {
            "Passive" => ksni::Status::Passive,
            "NeedsAttention" => ksni::Status::NeedsAttention,
            _ => ksni::Status::Active,
        }
    }

    fn icon_theme_path(&self) -> String {
        self.icon_dir.clone()
    }

    fn icon_name(&self) -> String {
        summary(&self.mounts).look.icon_name().into()
    }

    fn attention_icon_name(&self) -> String {
        summary(&self.mounts).look.icon_name().into()
    }

    fn tool_tip(&self) -> ToolTip {
        let s = summary(&self.mounts);
        ToolTip {
            icon_name: s.look.icon_name().into(),
            icon_pixmap: Vec::new(),
            title: s.title,
            description: s.description,
        }
    }

    fn activate(&mut self, _x: i32, _y: i32) {
        if let [m] = self.mounts.as_slice() {
            let _ = self.actions.send(Action::Open(m.mountpoint.clone()));
        }
    }

    fn menu(&self) -> Vec<MenuItem<Self>> {
        let mut menu = Vec::new();
        if self.mounts.is_empty() {
            menu.push(info_line("No drive mounted".into()));
        }
        for m in &self.mounts {
            let mut label = format!("{}: {}", m.name(), m.look().word());
            if !m.conflicts.is_empty() {
                label.push_str(&format!(
                    " ({})",
                    plural(m.conflicts.len() as u64, "conflict")
                ));
            }
            menu.push(submenu(label, mount_menu(m)));
        }
        if !self.unmounted.is_empty() {
            menu.push(submenu(
                "Mount…".into(),
                self.unmounted
                    .iter()
                    .map(|d| item(d.name.clone(), Action::Mount(d.name.clone())))
                    .collect(),
            ));
        }
        menu.push(MenuItem::Separator);
        menu.push(item("Quit panel icon", Action::Quit));
        menu
    }
}
