//! Desktop notifications through org.freedesktop.Notifications on the session bus (zbus),
//! and the actions the user clicks in them.

use std::collections::HashMap;

use futures_util::StreamExt;
use zbus::zvariant::Value;

use super::notices::Notice;

const DEST: &str = "org.freedesktop.Notifications";
const PATH: &str = "/org/freedesktop/Notifications";

/// The session bus connection that notifications go through.
#[derive(Clone)]
pub struct Notifications {
    conn: zbus::Connection,
}

impl Notifications {
    /// Connects to the session bus as the session's one panel icon (the bus name
    /// `org.edrive.Tray`, never queued for): `None` when another `edrive tray` holds it.
    pub async fn connect() -> zbus::Result<Option<Notifications>> {
        let conn = zbus::Connection::session().await?;
        // Nothing is served on this connection, but set up (empty) before owning a name.
        let _ = conn.object_server();
        match conn
            .request_name_with_flags(
                "org.edrive.Tray",
                zbus::fdo::RequestNameFlags::DoNotQueue.into(),
            )
            .await
        {
            Ok(_) => Ok(Some(Notifications { conn })),
            Err(zbus::Error::NameTaken) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Shows `n`; returns the notification's id.
    pub async fn show(&self, n: &Notice) -> zbus::Result<u32> {
        let actions: Vec<&str> = n.action().map(|(k, l)| vec![k, l]).unwrap_or_default();
        let hints: HashMap<&str, Value<'_>> = HashMap::new();
        let reply = self
            .conn
            .call_method(
                Some(DEST),
                PATH,
                Some(DEST),
                "Notify",
                &(
                    "edrive",
                    0u32,
                    n.icon(),
                    n.summary.as_str(),
                    n.body.as_str(),
                    actions,
                    hints,
                    -1i32,
                ),
            )
            .await?;
        reply.body().deserialize::<u32>()
    }

    /// The actions clicked in notifications: (notification id, action key).
    pub async fn invoked(
        &self,
    ) -> zbus::Result<impl futures_util::Stream<Item = (u32, String)> + use<>> {
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .interface(DEST)?
            .member("ActionInvoked")?
            .build();
        let stream = zbus::MessageStream::for_match_rule(rule, &self.conn, None).await?;
        Ok(stream.filter_map(|m| async move {
            m.ok()
                .and_then(|m| m.body().deserialize::<(u32, String)>().ok())
        }))
    }
}
