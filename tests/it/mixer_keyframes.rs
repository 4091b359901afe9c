//! The co-stream mixer with publishers that send keyframes seldom (OBS's default is often 5 s or
//! more), through real nginx-rtmp and ffmpeg: host and guest push with a keyframe every 6 s (and,
//! for comparison, every 2 s); the mixed stream's HLS playlist appears and its newest segment
//! decodes to the side-by-side picture, and no mixer that got both inputs gave up probing them
//! (the bug: a 3 s probe ended before the video's first keyframe, "matches no streams"). The time from the host's accept to a playable mix is
//! printed for docs/BENCHMARKS.md, not asserted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::accounts::{relaxed, verified_user};
use crate::common::ws::WsClient;
use crate::common::TestServer;
use crate::media_rtmp::{
    media_tools_present, pids_mentioning, push_key, push_picture_keyframes, wait_for_picture,
};

/// Frames per second of the test pushes.
const FPS: u32 = 30;

/// The `watch_url` a server message carries.
fn watch_url(message: &serde_json::Value) -> String {
    message["watch_url"]
        .as_str()
        .unwrap_or_else(|| panic!("a watch URL in {message}"))
        .to_owned()
}

/// Host and guest push 640x360 with a keyframe every `keyframe_secs`; the mix must play.
async fn mix_plays_with_keyframes_every(keyframe_secs: u32) {
    if !media_tools_present() {
        return;
    }
    let scratch = tempfile::tempdir().expect("a temp dir");
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.media.rtmp.manage_nginx = true;
    })
    .await;
    let (_, host_token) = verified_user(&server, "gophost").await;
    let (guest_id, guest_token) = verified_user(&server, "gopguest").await;
    let push_url = push_key(&server, &host_token, false).await["push_url"]
        .as_str()
        .expect("a push URL")
        .to_owned();
    let mut host = WsClient::connect(&server.base, &host_token).await;
    host.send(json!({"type": "start_live", "title": "seldom keyframes"}))
        .await;
    let started = host.expect("live_started").await;
    let room = started["room_id"].as_u64().expect("a room id");
    let host_watch = watch_url(&started);
    let picture = format!("testsrc=size=640x360:rate={FPS}");
    let gop = keyframe_secs * FPS;
    let _host_push = push_picture_keyframes(&push_url, 90, &picture, 440, gop);
    wait_for_picture(&server, &host_watch, scratch.path(), (640, 360)).await;

    let mut guest = WsClient::connect(&server.base, &guest_token).await;
    guest
        .send(json!({"type": "join_room", "room_id": room}))
        .await;
    guest.expect("room_info").await;
    guest.send(json!({"type": "apply_connect"})).await;
    host.expect("connect_request").await;
    let accepted = Instant::now();
    host.send(json!({"type": "answer_connect", "user_id": guest_id, "accept": true}))
        .await;
    let connect = guest.expect("connect_started").await;
    let guest_push_url = connect["push_url"].as_str().expect("a guest push URL");
    let mixed_watch = watch_url(&connect);
    let _guest_push = push_picture_keyframes(guest_push_url, 60, &picture, 880, gop);
    // Every mixer started on the way, with how long each was seen running.
    let mixed_id = mixed_watch
        .rsplit('/')
        .nth(1)
        .expect("the mix's id")
        .to_owned();
    let mixer = format!("/mix/{mixed_id}?");
    let done = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn({
        let (mixer, done) = (mixer.clone(), done.clone());
        async move {
            let mut seen: HashMap<u32, (Instant, Instant)> = HashMap::new();
            while !done.load(Ordering::Relaxed) {
                let now = Instant::now();
                for pid in pids_mentioning(&mixer) {
                    seen.entry(pid).or_insert((now, now)).1 = now;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            seen
        }
    });
    wait_for_picture(&server, &mixed_watch, scratch.path(), (1280, 360)).await;
    eprintln!(
        "keyframes every {keyframe_secs} s: accept -> mixed playable in {:.1} s",
        accepted.elapsed().as_secs_f64()
    );
    done.store(true, Ordering::Relaxed);
    let seen = watcher.await.expect("the watcher ends");
    // A mixer refused at once (the guest not pushing yet) is tried again; one that ran for a
    // while had both inputs, and probing them must not give up before their keyframes came.
    let running = pids_mentioning(&mixer);
    let gave_up: Vec<_> = seen
        .iter()
        .filter(|(pid, (first, last))| {
            *last - *first > Duration::from_secs(2) && !running.contains(pid)
        })
        .map(|(pid, (first, last))| (pid, (*last - *first).as_secs_f64()))
        .collect();
    assert!(
        gave_up.is_empty(),
        "mixers that ran with both inputs and exited (pid, seconds): {gave_up:?}"
    );
    assert_eq!(running.len(), 1, "one mixer runs: {running:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_mix_plays_when_publishers_send_a_keyframe_every_6_s() {
    mix_plays_with_keyframes_every(6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_mix_plays_when_publishers_send_a_keyframe_every_2_s() {
    mix_plays_with_keyframes_every(2).await;
}
