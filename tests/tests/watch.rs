//! A device in watch mode that its app writes to through a `WriteQueue`, against the real
//! server binary.

use std::time::{Duration, Instant};

use tidemark_cli::{Client, ClientError, ClientOptions, WriteQueue};
use tidemark_core::{Role, Value};
use tidemark_tests::server::{ServerOptions, ServerProcess};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const PATIENCE: Duration = Duration::from_secs(10);

/// A device watching in its own task, and how to write to it and stop it.
struct Watching {
    queue: WriteQueue,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<Client, ClientError>>,
}

fn watch(mut device: Client) -> Watching {
    let (queue, inbox) = WriteQueue::new();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let stop = async {
            let _ = stopped.await;
        };
        device
            .watch_with_writes(stop, inbox, |_, _| {})
            .await
            .map(|()| device)
    });
    Watching { queue, stop, task }
}

/// Syncs `reader` until it holds `orders/<id>`; fails after [`PATIENCE`].
async fn await_order(reader: &mut Client, id: &str) {
    let deadline = Instant::now() + PATIENCE;
    while reader.engine().replica().get("orders", id).is_none() {
        assert!(Instant::now() < deadline, "orders/{id} never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
        reader.sync(PATIENCE).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_queued_to_a_watching_device_are_pushed_without_a_sync_call() {
    let server = ServerProcess::start(ServerOptions::default()).await;
    let mut writer = server
        .device(Role::Writer, None, ClientOptions::default())
        .await;
    let mut reader = server
        .device(Role::Writer, None, ClientOptions::default())
        .await;
    writer.subscribe("orders").unwrap();
    reader.subscribe("orders").unwrap();
    let watching = watch(writer);

    // A refused write is the app's to hear about; the device keeps watching.
    let refused = watching
        .queue
        .write(|w| w.set("orders", "", "text", Value::from("no id")))
        .await;
    assert!(matches!(refused, Err(ClientError::Sync(_))), "{refused:?}");
    let made = watching
        .queue
        .write(|w| w.set("orders", "o1", "text", Value::from("queued")))
        .await
        .unwrap();
    assert!(!made.is_empty());
    await_order(&mut reader, "o1").await;

    watching.stop.send(()).unwrap();
    let writer = watching.task.await.unwrap().unwrap();
    assert_eq!(writer.engine().pending_writes(), 0);
    // The watch is over and its inbox gone: a late write is refused, not silently dropped.
    let late = watching
        .queue
        .write(|w| w.set("orders", "o2", "text", Value::from("late")))
        .await;
    assert!(matches!(late, Err(ClientError::NotWatching)), "{late:?}");
}

/// The first write to a collection the device does not sync yet subscribes it; the engine
/// then needs a grant covering it and must read the device's own levels there before it
/// pushes. The engine once read them only at the start of a polling round; the rounds that
/// start with the watch ran before the covering grant arrived and dropped those reads for
/// want of URLs, so the push waited for the next round: 5 minutes away on a live device.
/// Now the covering grant itself asks for the reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watching_devices_first_write_to_a_new_collection_is_pushed_promptly() {
    let server = ServerProcess::start(ServerOptions::default()).await;
    let writer = server
        .device(Role::Writer, None, ClientOptions::default())
        .await;
    let mut reader = server
        .device(Role::Writer, None, ClientOptions::default())
        .await;
    reader.subscribe("orders").unwrap();
    let watching = watch(writer);

    watching
        .queue
        .write(|w| w.set("orders", "o1", "text", Value::from("queued")))
        .await
        .unwrap();
    await_order(&mut reader, "o1").await;
    watching.stop.send(()).unwrap();
}
