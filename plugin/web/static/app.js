// sketchtext search page: a canvas, words and filters in; a grid of hits out. Plain JavaScript, no build step.
"use strict";

(() => {
  const TOKEN_KEY = "sketchtext-token";
  const LIMIT = 24;
  const $ = (id) => document.getElementById(id);

  // -- access: a token given once as ?token= is kept for this tab and sent as a bearer header
  const params = new URLSearchParams(location.search);
  const fromUrl = params.get("token");

  if (document.body.classList.contains("token-page")) {
    const stored = sessionStorage.getItem(TOKEN_KEY);
    if (fromUrl !== null) {
      sessionStorage.removeItem(TOKEN_KEY);
      $("token-message").textContent = "That token was not accepted. Try again.";
    } else if (stored) {
      location.replace("/?token=" + encodeURIComponent(stored));
    }
    return;
  }
  if (fromUrl !== null) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
  }
  const token = sessionStorage.getItem(TOKEN_KEY);
  const authHeaders = token ? { Authorization: "Bearer " + token } : {};
  const withToken = (url) => (token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url);

  // -- drawing
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const history_ = [];
  const MAX_UNDO = 40;
  let penWidth = 6;
  let erasing = false;
  let drawing = false;
  let dirty = false; // anything on the canvas?
  let last = null;

  function blank() {
    ctx.globalCompositeOperation = "source-over";
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }

  function snapshot() {
    history_.push({ image: ctx.getImageData(0, 0, canvas.width, canvas.height), dirty });
    if (history_.length > MAX_UNDO) history_.shift();
  }

  function showHint() {
    $("hint").classList.toggle("gone", dirty);
  }

  function point(event) {
    const box = canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) * canvas.width) / box.width,
      y: ((event.clientY - box.top) * canvas.height) / box.height,
      pressure: event.pointerType === "pen" && event.pressure > 0 ? event.pressure : 0.5,
    };
  }

  function stroke(from, to) {
    const scale = erasing ? 3 : 0.5 + to.pressure;
    ctx.strokeStyle = erasing ? "#ffffff" : "#111111";
    ctx.fillStyle = ctx.strokeStyle;
    ctx.lineWidth = penWidth * scale;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    if (from.x === to.x && from.y === to.y) {
      ctx.arc(to.x, to.y, ctx.lineWidth / 2, 0, Math.PI * 2);
      ctx.fill();
    } else {
      ctx.moveTo(from.x, from.y);
      ctx.lineTo(to.x, to.y);
      ctx.stroke();
    }
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (event.pointerType === "mouse" && event.button !== 0) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    snapshot();
    drawing = true;
    last = point(event);
    stroke(last, last);
  });

  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of events.length ? events : [event]) {
      const next = point(e);
      stroke(last, next);
      last = next;
    }
  });

  function endStroke() {
    if (!drawing) return;
    drawing = false;
    dirty = erasing ? !isBlank() : true;
    if (dirty) unlike();
    showHint();
    schedule(250);
  }
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);
  canvas.addEventListener("lostpointercapture", endStroke);

  function isBlank() {
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i] !== 255 || data[i + 1] !== 255 || data[i + 2] !== 255) return false;
    }
    return true;
  }

  for (const button of document.querySelectorAll(".tool.pen")) {
    button.addEventListener("click", () => {
      penWidth = Number(button.dataset.width);
      erasing = false;
      selectTool(button);
    });
  }
  $("eraser").addEventListener("click", () => {
    erasing = true;
    penWidth = 8;
    selectTool($("eraser"));
  });
  function selectTool(active) {
    for (const b of document.querySelectorAll(".tool.pen, #eraser")) {
      b.classList.toggle("active", b === active);
      b.setAttribute("aria-pressed", String(b === active));
    }
  }

  function undo() {
    const previous = history_.pop();
    if (!previous) return;
    ctx.putImageData(previous.image, 0, 0);
    dirty = previous.dirty;
    showHint();
    schedule(0);
  }
  $("undo").addEventListener("click", undo);
  $("clear").addEventListener("click", () => {
    if (!dirty) return;
    snapshot();
    blank();
    dirty = false;
    showHint();
    schedule(0);
  });

  async function useImage(file) {
    if (!file || !file.type.startsWith("image/")) {
      showError("That file is not an image; use a PNG or JPEG drawing.");
      return;
    }
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch {
      showError("That image cannot be read; use a PNG or JPEG drawing.");
      return;
    }
    snapshot();
    blank();
    const scale = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
    const w = bitmap.width * scale;
    const h = bitmap.height * scale;
    ctx.drawImage(bitmap, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
    dirty = true;
    showHint();
    schedule(0);
  }
  $("upload").addEventListener("change", (event) => {
    useImage(event.target.files[0]);
    event.target.value = "";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    useImage(event.dataTransfer.files[0]);
  });

  // -- searching: debounced after each stroke or keystroke; a newer search cancels an older one
  let timer = null;
  let controller = null;
  let sequence = 0;

  function schedule(delay) {
    clearTimeout(timer);
    if ($("auto").checked) timer = setTimeout(search, delay);
  }

  function status(message, isError = false) {
    const line = $("status");
    line.textContent = message;
    line.classList.toggle("error", isError);
  }
  function showError(message) {
    status(message, true);
  }

  async function api(path, options = {}) {
    const response = await fetch(path, { ...options, headers: { ...authHeaders, ...(options.headers || {}) } });
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = { error: `${response.status} ${response.statusText}` };
    }
    if (!response.ok) {
      if (response.status === 401) sessionStorage.removeItem(TOKEN_KEY);
      throw new Error(body.error || `${response.status} ${response.statusText}`);
    }
    return body;
  }

  async function search() {
    clearTimeout(timer);
    const text = $("text").value.trim();
    if (!dirty && !text && !like) {
      if (controller) controller.abort();
      sequence += 1;
      $("grid").replaceChildren();
      status("Draw a sketch or type a few words.");
      return;
    }
    if (controller) controller.abort();
    controller = new AbortController();
    const mine = ++sequence;
    const body = (lastQuery = {
      sketch: dirty && !like ? canvas.toDataURL("image/png") : null,
      like: like ? like.id : null,
      text: text || null,
      category: $("category").value || null,
      scene: $("scene").value || null,
      limit: LIMIT,
      regions: $("regions").checked,
    });
    paging = null;
    document.body.classList.add("busy");
    status("Searching…");
    try {
      const result = await api("/api/search", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      if (mine === sequence) {
        render(result);
        // A regions search reranks only its best candidates, so it has no next page (the API refuses an offset).
        const more = result.hits.length === LIMIT && !body.regions;
        paging = { body, shown: result.hits.length, more, loading: false };
        if (paging.more && isVisible($("more"))) more();
      }
    } catch (error) {
      if (error.name !== "AbortError" && mine === sequence) showError(error.message);
    } finally {
      if (mine === sequence) document.body.classList.remove("busy");
    }
  }

  function render(result) {
    const cards = result.hits.map(card);
    $("grid").replaceChildren(...cards);
    const count = result.hits.length;
    status(
      count
        ? `${count} result${count === 1 ? "" : "s"} · ${Math.round(result.took_ms)} ms`
        : "No results. Try another category or scene, or fewer words.",
    );
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function card(hit, rank) {
    const item = el("button", "card");
    item.type = "button";
    item.title = hit.title || hit.key || "";
    const frame = el("div", "thumb");
    if (hit.thumb_url) {
      const img = el("img");
      img.loading = "lazy";
      img.alt = hit.title || hit.sku || "photo";
      img.src = withToken(hit.thumb_url);
      frame.append(img);
    }
    const info = el("div", "info");
    const top = el("div", "top");
    top.append(el("span", "rank", `#${rank + 1}`), el("span", "score", hit.score.toFixed(3)));
    const bar = el("div", "meter");
    const fill = el("span");
    fill.style.width = `${Math.max(0, Math.min(1, hit.score)) * 100}%`;
    bar.append(fill);
    info.append(top, bar, el("div", "title", hit.title || hit.key || hit.id));
    const tags = el("div", "tags");
    if (hit.sku) tags.append(el("span", "sku", hit.sku));
    if (hit.category) tags.append(el("span", "chip", hit.category));
    if (hit.scene) tags.append(el("span", "chip scene", hit.scene));
    info.append(tags);
    item.append(frame, info);
    if (hit.asset_id) info.append(similarButton(hit));
    item.addEventListener("click", () => openPhoto(hit));
    return item;
  }

  // -- find similar: a hit's stored vector is the query (with the words, its photo stands for the sketch)
  let like = null; // { id, label } of the asset searched like, or null
  function similarButton(hit) {
    const button = el("span", "similar", "Similar");
    button.setAttribute("role", "button");
    button.tabIndex = 0;
    button.title = "Find products like this one (add words to change it: in red…)";
    const pick = (event) => {
      event.stopPropagation();
      event.preventDefault();
      like = { id: hit.asset_id, label: hit.sku || hit.title || hit.key };
      $("like-label").textContent = like.label;
      $("like-bar").hidden = false;
      search();
    };
    button.addEventListener("click", pick);
    button.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") pick(event);
    });
    return button;
  }
  function unlike() {
    like = null;
    $("like-bar").hidden = true;
  }
  $("like-clear").addEventListener("click", () => {
    unlike();
    search();
  });

  // -- paging on scroll: the next page (offset = hits shown) loads when the end of the grid comes into view
  let paging = null; // { body, shown, more, loading } of the current search
  async function more() {
    if (!paging || !paging.more || paging.loading) return;
    const page = paging;
    page.loading = true;
    const mine = sequence;
    try {
      const result = await api("/api/search", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ...page.body, offset: page.shown }),
      });
      if (mine !== sequence || page !== paging) return;
      $("grid").append(...result.hits.map((hit, i) => card(hit, page.shown + i)));
      page.shown += result.hits.length;
      page.more = result.hits.length === LIMIT;
      status(`${page.shown} results${page.more ? " · scroll for more" : ""}`);
    } catch (error) {
      if (mine === sequence) showError(error.message);
    } finally {
      page.loading = false;
    }
    if (page.more && page === paging && isVisible($("more"))) more();
  }
  function isVisible(node) {
    const box = node.getBoundingClientRect();
    return box.top < window.innerHeight && box.bottom >= 0;
  }
  new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) more();
  }).observe($("more"));

  // -- lightbox
  const lightbox = $("lightbox");
  function openPhoto(hit) {
    if (!hit.photo_url) return;
    openHit = hit;
    $("mark-status").textContent = "";
    $("lightbox-img").src = withToken(hit.photo_url);
    $("lightbox-img").alt = hit.title || hit.sku || "photo";
    const parts = [hit.title, hit.sku, hit.category, hit.scene, `score ${hit.score.toFixed(3)}`];
    $("lightbox-caption").textContent = parts.filter(Boolean).join(" · ");
    lightbox.hidden = false;
    $("lightbox-close").focus();
  }
  function closePhoto() {
    lightbox.hidden = true;
    $("lightbox-img").removeAttribute("src");
  }
  lightbox.addEventListener("click", (event) => {
    if (event.target !== $("lightbox-img") && !event.target.closest("#marks")) closePhoto();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !lightbox.hidden) closePhoto();
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement?.tagName);
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z" && !typing) {
      event.preventDefault();
      undo();
    }
  });

  // -- words and filters
  $("text").addEventListener("input", () => schedule(350));
  $("text").addEventListener("keydown", (event) => {
    if (event.key === "Enter") search();
  });
  $("category").addEventListener("change", () => schedule(0));
  $("scene").addEventListener("change", () => schedule(0));
  $("regions").addEventListener("change", () => schedule(0));
  $("search").addEventListener("click", search);

  async function loadFacets() {
    try {
      const facets = await api("/api/facets");
      for (const [id, values] of [["category", facets.categories], ["scene", facets.scenes]]) {
        const select = $(id);
        for (const value of values) select.append(new Option(value, value));
      }
      $("regions-field").hidden = !facets.regions;
      $("meta").textContent = `${facets.collection} · ${facets.assets.toLocaleString()} photos`;
    } catch (error) {
      $("meta").textContent = "collection unavailable";
      showError(error.message);
    }
  }

  // -- staff marks: the open hit is (or is not) what the last query looks for; kept with the query for `eval`
  let lastQuery = null;
  let openHit = null;
  async function mark(kind) {
    if (!openHit || !lastQuery) return;
    const { sketch, text, category, scene } = lastQuery;
    try {
      await api("/api/feedback", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ asset_id: openHit.asset_id, mark: kind, sketch, text, category, scene }),
      });
      $("mark-status").textContent = kind === "match" ? "Marked: this is it. Thank you." : "Marked: wrong. Thank you.";
    } catch (error) {
      $("mark-status").textContent = error.message;
    }
  }
  $("mark-match").addEventListener("click", () => mark("match"));
  $("mark-wrong").addEventListener("click", () => mark("wrong"));

  // -- catalogue runs: the latest ingest runs, and a new scan of the catalogue run by the server
  let following = null;
  function runLine(run) {
    const when = run.finished_at || run.started_at || "";
    const counts = `${run.embedded} embedded, ${run.unchanged} unchanged, ${run.failed} failed`;
    return el("li", `run ${run.status}`, `#${run.run_id} ${run.status} · ${counts} · ${when.slice(0, 19).replace("T", " ")}`);
  }
  async function loadRuns() {
    try {
      const listed = await api("/api/ingest");
      $("run-list").replaceChildren(...listed.runs.slice(0, 5).map(runLine));
      const current = listed.current;
      const busy = current && !["completed", "interrupted", "failed"].includes(current.state);
      $("rescan").disabled = Boolean(busy);
      if (busy) {
        $("rescan").textContent = `Scanning… ${current.done}/${current.total || "?"}`;
        clearTimeout(following);
        following = setTimeout(loadRuns, 1000);
      } else {
        $("rescan").textContent = "Scan catalogue again";
      }
    } catch (error) {
      $("run-list").replaceChildren(el("li", "run failed", error.message));
    }
  }
  $("rescan").addEventListener("click", async () => {
    $("rescan").disabled = true;
    try {
      await api("/api/ingest", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
    } catch (error) {
      showError(error.message);
    }
    loadRuns();
  });

  blank();
  showHint();
  loadFacets();
  loadRuns();
})();
