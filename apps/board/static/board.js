// Live updates: new posts arrive over server-sent events and are put on top.
"use strict";

function startLiveUpdates() {
  const list = document.getElementById("posts");
  const status = document.getElementById("live-status");
  if (!list || !list.dataset.events) {
    return;
  }
  const show = (text, state) => {
    status.textContent = text;
    status.dataset.state = state;
    document.body.dataset.live = state;
  };
  const source = new EventSource(list.dataset.events);
  source.addEventListener("ready", () => show("live: new posts appear here", "ready"));
  source.addEventListener("unavailable", () => show("live updates unavailable, retrying", "down"));
  source.addEventListener("error", () => show("reconnecting…", "reconnecting"));
  // each "posts" event holds the new posts, oldest first: the newest ends on top
  source.addEventListener("posts", (event) => {
    for (const post of JSON.parse(event.data)) {
      if (document.getElementById("post-" + post.id)) {
        continue;
      }
      const holder = document.createElement("template");
      holder.innerHTML = post.html.trim();
      const item = holder.content.firstElementChild;
      item.classList.add("fresh");
      const empty = document.getElementById("empty");
      if (empty) {
        empty.remove();
      }
      list.prepend(item);
    }
  });
  window.addEventListener("pagehide", () => source.close());
}

document.addEventListener("DOMContentLoaded", startLiveUpdates);
