/*
 * mmrag chat widget: one <script> tag on any page gives a chat bubble that asks the mmrag
 * server and shows its streamed answer with clickable citations (image, video at its time,
 * PDF page). docs/widget.md describes the attributes and the server settings it needs.
 *
 *   <script src="https://HOST/widget.js" data-key="API_KEY" async></script>
 *
 * Why the choices:
 * - Everything lives in a shadow root on its own element, and its styles sit in that root
 *   only, so the page's CSS cannot reach in and ours cannot leak out; :host { all: initial }
 *   also stops the page's inherited fonts and colours.
 * - Plain JS, no build step, no third-party requests: the server is the only peer.
 * - fetch() with a stream reader, not EventSource: the question is POSTed (with the key).
 * - With a key, the server signs the media links of an answer (exp, sig), so <img> and
 *   <video> load them directly and a video streams and seeks with range requests. An
 *   unsigned link (an older server) is fetched with the Authorization header and shown
 *   from a blob: URL, because <img>/<video> cannot send the header themselves.
 * - Server text is only ever inserted as text nodes, never as HTML.
 */
(() => {
  "use strict";

  const TAG = "mmrag-widget";
  const script =
    document.currentScript ||
    [...document.querySelectorAll("script[src]")]
      .reverse()
      .find((s) => /\/widget\.js(?:[?#]|$)/.test(s.src));
  if (!script) {
    console.error("mmrag widget: cannot find its own <script> tag (its src must end in widget.js)");
    return;
  }

  const data = script.dataset;
  const config = {
    key: (data.key || "").trim(),
    title: (data.title || "").trim() || "Ask a question",
    color: (data.color || "").trim() || "#2457c5",
    position: data.position === "bottom-left" ? "bottom-left" : "bottom-right",
    placeholder: (data.placeholder || "").trim() || "Type your question",
    base: baseUrl(data.host, script.src),
  };

  function baseUrl(host, src) {
    // data-host wins; otherwise where the script came from, minus "/widget.js" (so a
    // server behind a path prefix works too).
    try {
      if (host) return new URL(host, location.href).href.replace(/\/+$/, "");
      const url = new URL(src, location.href);
      return (url.origin + url.pathname.replace(/\/widget\.js$/, "")).replace(/\/+$/, "");
    } catch (e) {
      return location.origin;
    }
  }

  // --- styles (inside the shadow root only) ---------------------------------------------

  const STYLES = `
:host { all: initial; }
*, *::before, *::after { box-sizing: border-box; }
[hidden] { display: none !important; }
.root {
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    sans-serif;
  color: #1b1b1f;
  -webkit-font-smoothing: antialiased;
}
button, input { font: inherit; color: inherit; margin: 0; }
button { cursor: pointer; }
:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
.bubble {
  position: fixed; bottom: 20px; z-index: 2147483646;
  width: 56px; height: 56px; border-radius: 50%; border: 0; padding: 0;
  display: grid; place-items: center;
  background: var(--accent); color: var(--on-accent);
  box-shadow: 0 4px 14px rgba(0, 0, 0, .25);
}
.bubble svg { width: 28px; height: 28px; }
.left .bubble, .left .panel { left: 20px; }
.right .bubble, .right .panel { right: 20px; }
.panel {
  position: fixed; bottom: 88px; z-index: 2147483647;
  width: min(400px, calc(100vw - 40px)); height: min(620px, calc(100vh - 108px));
  display: flex; flex-direction: column; overflow: hidden;
  background: #fff; border-radius: 14px;
  box-shadow: 0 10px 40px rgba(0, 0, 0, .28), 0 0 0 1px rgba(0, 0, 0, .06);
}
header {
  display: flex; align-items: center; gap: 8px; padding: 10px 10px 10px 16px;
  background: var(--accent); color: var(--on-accent);
}
h2 { flex: 1; margin: 0; font-size: 16px; font-weight: 600; line-height: 1.3; }
.icon {
  width: 36px; height: 36px; flex: none; border: 0; border-radius: 8px; padding: 0;
  display: grid; place-items: center; background: transparent; color: inherit;
}
.icon:hover { background: rgba(127, 127, 127, .2); }
.icon svg { width: 20px; height: 20px; }
.main { flex: 1; min-height: 0; position: relative; display: flex; flex-direction: column; }
.log { flex: 1; overflow-y: auto; padding: 14px 14px 4px; overscroll-behavior: contain; }
.empty { margin: 24px 8px; color: #5b5b66; text-align: center; }
.msg { margin: 0 0 12px; padding: 9px 12px; border-radius: 12px; overflow-wrap: anywhere; }
.user {
  margin-left: 15%; background: var(--accent); color: var(--on-accent);
  white-space: pre-wrap; border-bottom-right-radius: 4px;
}
.bot { margin-right: 6%; background: #f1f2f5; border-bottom-left-radius: 4px; }
.meta { margin: 0 0 4px; font-size: 12.5px; color: #5b5b66; }
.answer { margin: 0; white-space: pre-wrap; }
.answer:empty { display: none; }
.note { margin: 6px 0 0; font-size: 13px; color: #6b4e00; }
.error { margin: 0; color: #a3161b; }
.cite {
  color: var(--link); font-weight: 600; text-decoration: none; border-radius: 3px;
  padding: 0 1px;
}
.cite:hover { text-decoration: underline; }
.cite.weak { text-decoration: underline dotted; }
.sources { margin: 8px 0 0; }
.sources h3 { margin: 0 0 4px; font-size: 12.5px; font-weight: 600; color: #5b5b66; }
.sources ol { list-style: none; margin: 0; padding: 0; display: grid; gap: 4px; }
.source {
  width: 100%; display: flex; align-items: center; gap: 8px; text-align: left;
  padding: 4px 6px; border: 1px solid #d9dbe1; border-radius: 8px; background: #fff;
  font-size: 13px; line-height: 1.3;
}
.source:hover { border-color: var(--link); }
.source.uncited { opacity: .72; }
.source img, .source .glyph {
  width: 40px; height: 30px; flex: none; border-radius: 4px; object-fit: cover;
  background: #e4e6eb;
}
.source .glyph { display: grid; place-items: center; font-size: 11px; color: #5b5b66; }
.source .n { font-weight: 600; color: var(--link); }
.source .label { flex: 1; min-width: 0; overflow: hidden; text-overflow: ellipsis; }
form {
  display: flex; gap: 8px; padding: 10px; border-top: 1px solid #e4e6eb; background: #fff;
}
input {
  flex: 1; min-width: 0; padding: 9px 12px; font-size: 16px;
  border: 1px solid #c4c7cf; border-radius: 10px; background: #fff;
}
input:focus { border-color: var(--link); outline: none; box-shadow: 0 0 0 2px var(--focus); }
.send {
  flex: none; padding: 0 16px; border: 0; border-radius: 10px; font-weight: 600;
  background: var(--accent); color: var(--on-accent);
}
.send:disabled { opacity: .55; cursor: default; }
.viewer {
  position: absolute; inset: 0; display: flex; flex-direction: column;
  background: #fff;
}
.viewer .bar {
  display: flex; align-items: center; gap: 6px; padding: 6px 10px;
  border-bottom: 1px solid #e4e6eb;
}
.viewer h3 {
  flex: 1; min-width: 0; margin: 0; font-size: 14px; font-weight: 600;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
}
.viewer .body { flex: 1; overflow-y: auto; padding: 12px; }
.viewer img, .viewer video {
  display: block; width: 100%; max-height: 60vh; object-fit: contain;
  background: #111; border-radius: 8px;
}
.viewer img.page { background: #fff; border: 1px solid #d9dbe1; }
.viewer .where { margin: 8px 0; font-size: 13px; color: #5b5b66; }
.viewer blockquote {
  margin: 8px 0 0; padding: 8px 10px; border-left: 3px solid var(--accent);
  background: #f6f7f9; white-space: pre-wrap; font-size: 13.5px;
}
.viewer a { color: var(--link); }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
@media (max-width: 480px) {
  .left .panel, .right .panel {
    inset: 0; width: auto; height: auto; border-radius: 0;
  }
  .user { margin-left: 8%; }
  .bot { margin-right: 0; }
}
@media (prefers-reduced-motion: no-preference) {
  .panel:not([hidden]) { animation: rise .16s ease-out; }
  @keyframes rise { from { opacity: 0; transform: translateY(8px); } }
}
`;

  const ICON_CHAT =
    '<svg viewBox="0 0 24 24" aria-hidden="true" fill="currentColor"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2zm3 6a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3zm5 0a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3zm5 0a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3z"/></svg>';
  const ICON_CLOSE =
    '<svg viewBox="0 0 24 24" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2.2" stroke-linecap="round"><path d="M6 6l12 12M18 6L6 18"/></svg>';
  const ICON_BACK =
    '<svg viewBox="0 0 24 24" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2.2" stroke-linecap="round" stroke-linejoin="round"><path d="M15 5l-7 7 7 7"/></svg>';

  // --- small helpers ---------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name === "html") node.innerHTML = value; // our own constant icons only
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function absolute(path) {
    return /^[a-z][a-z0-9+.-]*:/i.test(path) ? path : config.base + path;
  }

  function headers(extra) {
    const out = Object.assign({}, extra);
    if (config.key) out.Authorization = "Bearer " + config.key;
    return out;
  }

  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const rest = String(s % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
  }

  function fileName(path) {
    return String(path || "").split(/[\\/]/).pop() || String(path || "");
  }

  function isTimed(src) {
    return (src.corpus === "clip" || src.corpus === "video") && Boolean(src.media.file);
  }

  function describe(src) {
    const name = src.title || fileName(src.source);
    if (isTimed(src) && src.t_start !== null && src.t_start !== undefined) {
      const end = src.t_end !== null && src.t_end !== undefined ? `–${clock(src.t_end)}` : "";
      return `${name} · ${clock(src.t_start)}${end}`;
    }
    return src.page ? `${name} · p. ${src.page}` : name;
  }

  function mediaFragment(src) {
    if (!isTimed(src) || src.t_start === null || src.t_start === undefined) return "";
    const end = src.t_end !== null && src.t_end !== undefined ? `,${src.t_end}` : "";
    return `#t=${src.t_start}${end}`;
  }

  // A media URL the page can load: the server's URL (signed when the server has keys), or
  // for an unsigned one with a key, a blob: URL of the bytes fetched with the
  // Authorization header. Cached per URL.
  const blobs = new Map();
  function mediaSrc(path) {
    const url = absolute(path);
    if (!config.key || /[?&]sig=/.test(url)) return Promise.resolve(url);
    if (!blobs.has(url)) {
      const promise = fetch(url, { headers: headers(), credentials: "omit" })
        .then((r) => {
          if (!r.ok) throw new Error(`${r.status} for ${url}`);
          return r.blob();
        })
        .then((b) => URL.createObjectURL(b));
      promise.catch(() => blobs.delete(url));
      blobs.set(url, promise);
    }
    return blobs.get(url);
  }

  // Sets node[attr] to the media's URL once known; a thumbnail that fails just goes away.
  function load(node, attr, path, suffix, thumbnail) {
    mediaSrc(path).then(
      (url) => node.setAttribute(attr, url + (suffix || "")),
      (e) => {
        console.error("mmrag widget:", e);
        if (thumbnail) node.remove();
        else node.replaceWith(el("p", { class: "error", text: "This file could not be loaded." }));
      },
    );
    return node;
  }

  // Contrast: the text colour on the accent, and a link colour readable on white.
  function luminance(rgb) {
    const [r, g, b] = rgb.map((v) => {
      const c = v / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  }

  function palette(root, color) {
    const accent = window.CSS && CSS.supports("color", color) ? color : "#2457c5";
    const probe = el("span", { hidden: true });
    probe.style.color = accent;
    root.append(probe);
    const parts = (getComputedStyle(probe).color.match(/[\d.]+/g) || ["36", "87", "197"])
      .slice(0, 3)
      .map(Number);
    probe.remove();
    const l = luminance(parts);
    const onAccent = (1.05 / (l + 0.05) >= (l + 0.05) / 0.05) ? "#ffffff" : "#111111";
    const link = 1.05 / (l + 0.05) >= 4.5 ? accent : "#1f3f8f";
    root.style.setProperty("--accent", accent);
    root.style.setProperty("--on-accent", onAccent);
    root.style.setProperty("--link", link);
    root.style.setProperty("--focus", link === accent ? accent : "#1f3f8f");
  }

  // --- server-sent events over fetch -------------------------------------------------------

  function parseEvent(block) {
    let event = "message";
    const lines = [];
    for (const line of block.split(/\r\n|\r|\n/)) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") lines.push(value);
    }
    if (!lines.length) return null;
    const raw = lines.join("\n");
    try {
      return { event, data: JSON.parse(raw) };
    } catch (e) {
      return { event, data: raw };
    }
  }

  async function* readEvents(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
      let gap;
      while ((gap = /\r\n\r\n|\n\n|\r\r/.exec(buffer))) {
        const event = parseEvent(buffer.slice(0, gap.index));
        buffer = buffer.slice(gap.index + gap[0].length);
        if (event) yield event;
      }
      if (done) {
        const last = parseEvent(buffer);
        if (last) yield last;
        return;
      }
    }
  }

  // --- errors, in words a reader can act on -----------------------------------------------

  async function httpError(response) {
    let code = "";
    let message = "";
    try {
      const body = await response.json();
      code = (body.error && body.error.code) || "";
      message = (body.error && body.error.message) || "";
    } catch (e) {
      message = response.statusText;
    }
    const status = response.status;
    if (status === 401) {
      return config.key
        ? "The assistant did not accept this site's API key (401 unauthorized)."
        : "The assistant needs an API key (401 unauthorized): set data-key on the widget's script tag.";
    }
    if (status === 403 && code === "origin_not_allowed") return notAllowed();
    if (status === 429) {
      const wait = response.headers.get("Retry-After");
      return `Too many questions right now; please try again${wait ? ` in ${wait} s` : " shortly"}.`;
    }
    if (status >= 500) {
      return `The assistant is unavailable right now (${status}${code ? " " + code : ""}). ${message}`.trim();
    }
    return `The question could not be answered (${status}${code ? " " + code : ""}): ${message}`;
  }

  function notAllowed() {
    return (
      `The assistant at ${config.base} does not accept questions from this site ` +
      `(${location.origin}). Its MMRAG_CORS_ORIGINS setting must list this origin.`
    );
  }

  // fetch() rejects both when the server is down and when the browser refuses the answer
  // (CORS): a no-cors probe of /health, which needs no key, tells the two apart.
  async function networkError() {
    try {
      await fetch(absolute("/health"), { mode: "no-cors", cache: "no-store", credentials: "omit" });
      return notAllowed();
    } catch (e) {
      return `Cannot reach the assistant at ${config.base}. Check the connection and try again.`;
    }
  }

  // --- the widget ----------------------------------------------------------------------------

  function mount() {
    if ([...document.querySelectorAll(TAG)].some((n) => n.dataset.base === config.base)) return;
    const host = document.createElement(TAG);
    host.dataset.base = config.base;
    // The host box itself: nothing the page says about unknown elements may move it.
    host.style.cssText =
      "all: initial !important; position: fixed !important; top: 0 !important; " +
      "left: 0 !important; width: 0 !important; height: 0 !important; " +
      "z-index: 2147483647 !important; display: block !important;";
    const shadow = host.attachShadow({ mode: "open" });
    if (shadow.adoptedStyleSheets !== undefined && window.CSSStyleSheet) {
      // A constructed sheet is not an inline <style>, so a page's CSP allows it.
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(STYLES);
      shadow.adoptedStyleSheets = [sheet];
    } else {
      shadow.append(el("style", { text: STYLES }));
    }

    const side = config.position === "bottom-left" ? "left" : "right";
    const root = el("div", { class: `root ${side}` });
    shadow.append(root);
    palette(root, config.color);

    const bubble = el("button", {
      type: "button",
      class: "bubble",
      "aria-label": `Open chat: ${config.title}`,
      "aria-expanded": "false",
      "aria-controls": "mmrag-panel",
      html: ICON_CHAT,
    });
    const closeButton = el("button", {
      type: "button",
      class: "icon close",
      "aria-label": "Close chat",
      html: ICON_CLOSE,
    });
    const log = el(
      "div",
      { class: "log", role: "log", "aria-live": "polite", "aria-label": "Conversation" },
      el("p", { class: "empty", text: "Ask a question; answers cite their sources." }),
    );
    const input = el("input", {
      type: "text",
      name: "question",
      maxlength: 1000,
      autocomplete: "off",
      placeholder: config.placeholder,
      "aria-label": "Your question",
    });
    const send = el("button", { type: "submit", class: "send", text: "Send" });
    const form = el("form", { class: "ask" }, input, send);
    const viewerTitle = el("h3", { id: "mmrag-viewer-title" });
    const viewerBody = el("div", { class: "body" });
    const back = el("button", {
      type: "button",
      class: "icon back",
      "aria-label": "Back to the conversation",
      html: ICON_BACK,
    });
    const viewer = el(
      "section",
      { class: "viewer", "aria-labelledby": "mmrag-viewer-title", hidden: true },
      el("div", { class: "bar" }, back, viewerTitle),
      viewerBody,
    );
    const panel = el(
      "section",
      {
        class: "panel",
        id: "mmrag-panel",
        role: "dialog",
        "aria-labelledby": "mmrag-title",
        hidden: true,
      },
      el("header", {}, el("h2", { id: "mmrag-title", text: config.title }), closeButton),
      el("div", { class: "main" }, log, form, viewer),
    );
    root.append(panel, bubble);

    let busy = false;
    let returnFocus = null;

    function openPanel() {
      panel.hidden = false;
      bubble.setAttribute("aria-expanded", "true");
      bubble.setAttribute("aria-label", `Close chat: ${config.title}`);
      input.focus();
    }

    function closePanel() {
      closeViewer(false);
      panel.hidden = true;
      bubble.setAttribute("aria-expanded", "false");
      bubble.setAttribute("aria-label", `Open chat: ${config.title}`);
      bubble.focus();
    }

    function closeViewer(refocus) {
      if (viewer.hidden) return;
      for (const media of viewerBody.querySelectorAll("video")) media.pause();
      viewer.hidden = true;
      viewerBody.replaceChildren();
      if (refocus !== false) (returnFocus && returnFocus.isConnected ? returnFocus : input).focus();
      returnFocus = null;
    }

    bubble.addEventListener("click", () => (panel.hidden ? openPanel() : closePanel()));
    closeButton.addEventListener("click", closePanel);
    back.addEventListener("click", () => closeViewer());
    panel.addEventListener("keydown", (e) => {
      if (e.key !== "Escape") return;
      e.stopPropagation();
      if (!viewer.hidden) closeViewer();
      else closePanel();
    });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const question = input.value.trim();
      if (!question || busy) return;
      input.value = "";
      ask(question);
    });

    // -- opening a source ----------------------------------------------------------------

    function openSource(src, trigger) {
      returnFocus = trigger || null;
      viewerTitle.textContent = `[${src.number}] ${src.title || fileName(src.source)}`;
      viewerBody.replaceChildren();
      const media = src.media || {};
      const where = [];
      if (isTimed(src)) {
        const video = el("video", {
          controls: true,
          preload: "metadata",
          playsinline: true,
          "aria-label": describe(src),
          "data-t-start": src.t_start,
        });
        const start = Number(src.t_start) || 0;
        // The #t fragment starts (and stops) the player at the clip; setting currentTime
        // as well covers players that ignore fragments on blob: URLs.
        video.addEventListener(
          "loadedmetadata",
          () => {
            if (Math.abs(video.currentTime - start) > 0.2) video.currentTime = start;
          },
          { once: true },
        );
        viewerBody.append(load(video, "src", media.file, mediaFragment(src)));
        if (src.t_start !== null && src.t_start !== undefined) {
          where.push(`from ${clock(src.t_start)}` + (src.t_end ? ` to ${clock(src.t_end)}` : ""));
        }
      } else if (src.corpus === "image" && (media.file || media.thumbnail)) {
        viewerBody.append(
          load(el("img", { alt: src.title || fileName(src.source) }), "src", media.file || media.thumbnail),
        );
      } else if (media.page_image) {
        viewerBody.append(
          load(
            el("img", { class: "page", alt: `Page ${src.page} of ${fileName(src.source)}` }),
            "src",
            media.page_image,
          ),
        );
      } else if (media.thumbnail) {
        viewerBody.append(load(el("img", { alt: "" }), "src", media.thumbnail));
      }
      if (src.page) where.push(`page ${src.page}`);
      if (src.heading && src.heading.length) where.push(src.heading.join(" › "));
      where.unshift(fileName(src.source));
      viewerBody.append(el("p", { class: "where", text: where.join(" · ") }));
      if (src.text && src.corpus !== "image") viewerBody.append(el("blockquote", { text: src.text }));
      if (!config.key && media.file) {
        viewerBody.append(
          el("p", {}, el("a", { href: absolute(media.file) + mediaFragment(src), target: "_blank", rel: "noopener", text: "Open the file" })),
        );
      }
      viewer.hidden = false;
      back.focus();
    }

    // -- one question and its answer ---------------------------------------------------------

    function turn(question) {
      const empty = log.querySelector(".empty");
      if (empty) empty.remove();
      const meta = el("p", { class: "meta", text: "Thinking…" });
      const answer = el("p", { class: "answer" });
      const note = el("p", { class: "note", hidden: true });
      const sourcesBox = el("div", { class: "sources", hidden: true });
      const bot = el("div", { class: "msg bot", "aria-busy": "true" }, meta, answer, note, sourcesBox);
      log.append(el("p", { class: "msg user", text: question }), bot);
      let sources = new Map();
      let weak = new Set();
      const scroll = () => {
        log.scrollTop = log.scrollHeight;
      };
      scroll();

      function renderText(text) {
        const parts = [];
        const marker = /\[(\d+(?:\s*,\s*\d+)*)\]/g;
        let at = 0;
        let m;
        while ((m = marker.exec(text))) {
          const numbers = m[1].split(",").map((n) => Number(n.trim()));
          if (!numbers.every((n) => sources.has(n))) continue;
          parts.push(text.slice(at, m.index), "[");
          numbers.forEach((n, i) => {
            const src = sources.get(n);
            const link = el("a", {
              class: weak.has(n) ? "cite weak" : "cite",
              href: src.media && src.media.file ? absolute(src.media.file) + mediaFragment(src) : "#",
              "data-n": n,
              "aria-label": `Source ${n}: ${describe(src)}`,
              title: weak.has(n) ? "The source only partly supports this" : describe(src),
              text: String(n),
            });
            link.addEventListener("click", (e) => {
              e.preventDefault();
              openSource(src, link);
            });
            if (i) parts.push(", ");
            parts.push(link);
          });
          parts.push("]");
          at = m.index + m[0].length;
        }
        parts.push(text.slice(at));
        answer.replaceChildren(...parts.filter((p) => p !== ""));
        scroll();
      }

      function renderSources(list, final) {
        sources = new Map(list.map((s) => [s.number, s]));
        if (!list.length) {
          sourcesBox.hidden = true;
          return;
        }
        const items = list.map((src) => {
          const thumb = src.corpus === "image" ? src.media.thumbnail || src.media.file
            : (src.media.keyframes && src.media.keyframes[0]) || src.media.thumbnail;
          const button = el(
            "button",
            {
              type: "button",
              class: final && !src.cited ? "source uncited" : "source",
              "data-n": src.number,
              "data-corpus": src.corpus,
              "data-t-start": src.t_start,
              title: src.source,
              "aria-label": `Open source ${src.number}: ${describe(src)}${final && !src.cited ? " (not cited)" : ""}`,
            },
            thumb
              ? load(el("img", { alt: "" }), "src", thumb, "", true)
              : el("span", { class: "glyph", "aria-hidden": "true", text: src.page ? "PDF" : "TXT" }),
            el("span", { class: "label" }, el("span", { class: "n", text: `[${src.number}] ` }), describe(src)),
          );
          button.addEventListener("click", () => openSource(src, button));
          return el("li", {}, button);
        });
        sourcesBox.replaceChildren(el("h3", { text: "Sources" }), el("ol", {}, ...items));
        sourcesBox.hidden = false;
      }

      return {
        route(route) {
          const corpora = route.corpora || [];
          meta.textContent = corpora.length ? `Searching ${corpora.join(", ")}…` : "Answering…";
        },
        sources(list) {
          renderSources(list, false);
        },
        text(text) {
          note.hidden = true;
          renderText(text);
        },
        retry() {
          answer.replaceChildren();
          note.textContent = "Rewriting the answer so that it cites its sources…";
          note.hidden = false;
        },
        done(result) {
          weak = new Set(result.weak_citations || []);
          renderSources(result.sources || [], true);
          renderText(result.answer || "");
          const corpora = (result.route && result.route.corpora) || [];
          const seconds = result.timings && result.timings.total_ms ? ` · ${(result.timings.total_ms / 1000).toFixed(1)} s` : "";
          meta.textContent = (corpora.length ? `Searched ${corpora.join(", ")}` : "Answered without sources") + seconds;
          const conflicts = (result.conflicts || []).map(
            (c) => `Sources [${c.a}] and [${c.b}] disagree: “${c.a_says}” vs “${c.b_says}”.`,
          );
          if (conflicts.length) {
            note.textContent = conflicts.join(" ");
            note.hidden = false;
          } else {
            note.hidden = true;
          }
          bot.setAttribute("aria-busy", "false");
          bot.classList.add("done");
          scroll();
        },
        fail(message) {
          meta.remove();
          answer.replaceChildren();
          note.hidden = true;
          bot.append(el("p", { class: "error", role: "alert", text: message }));
          bot.setAttribute("aria-busy", "false");
          bot.classList.add("failed");
          scroll();
        },
      };
    }

    async function ask(question) {
      busy = true;
      send.disabled = true;
      const t = turn(question);
      try {
        let response;
        try {
          response = await fetch(absolute("/api/v1/ask"), {
            method: "POST",
            headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
            body: JSON.stringify({ question, stream: true }),
            credentials: "omit",
          });
        } catch (e) {
          t.fail(await networkError());
          return;
        }
        if (!response.ok) {
          t.fail(await httpError(response));
          return;
        }
        let text = "";
        try {
          for await (const { event, data: payload } of readEvents(response)) {
            if (event === "route") t.route(payload);
            else if (event === "sources") t.sources(payload);
            else if (event === "token") t.text((text += payload.text || ""));
            else if (event === "retry") {
              text = "";
              t.retry(payload.reason);
            } else if (event === "done") {
              t.done(payload);
              return;
            } else if (event === "error") {
              t.fail(`The assistant could not answer (${payload.code}): ${payload.message}`);
              return;
            }
          }
          t.fail("The answer stopped before it was finished. Please ask again.");
        } catch (e) {
          t.fail("The connection was lost while answering. Please ask again.");
        }
      } finally {
        busy = false;
        send.disabled = false;
      }
    }

    document.body.append(host);
  }

  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount, { once: true });
})();
