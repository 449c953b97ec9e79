// The grid polls the JSON of the window it shows every 2 s and redraws it when the fleet changed, so a
// cluster becoming unreachable or a pair turning Degraded shows within seconds. No framework, no CDN.
(function () {
  "use strict";
  const table = document.getElementById("grid");
  let last = "";
  const params = () => new URLSearchParams({
    selector: document.getElementById("selector").value,
    q: document.getElementById("search").value,
    offset: document.getElementById("offset").value,
    limit: document.getElementById("limit").value,
  });
  const text = (tag, value, cls) => {
    const el = document.createElement(tag);
    if (cls) el.className = cls;
    el.textContent = value;
    return el;
  };
  function draw(grid) {
    table.dataset.version = grid.version;
    const head = document.createElement("tr");
    head.append(text("th", "Cluster"), text("th", "Version"));
    for (const w of grid.workloads) {
      const th = text("th", "", "workload");
      const a = text("a", w.namespace + "/" + w.name);
      a.href = "/workloads/" + encodeURIComponent(w.namespace) + "/" + encodeURIComponent(w.name);
      th.title = w.namespace + "/" + w.name;
      th.append(a);
      head.append(th);
    }
    table.tHead.replaceChildren(head);
    const rows = [];
    for (const c of grid.clusters) {
      const tr = document.createElement("tr");
      tr.dataset.cluster = c.namespace + "/" + c.name;
      if (!c.ready) tr.className = "unreachable";
      const th = document.createElement("th");
      const a = text("a", c.namespace + "/" + c.name);
      a.href = "/clusters/" + encodeURIComponent(c.namespace) + "/" + encodeURIComponent(c.name);
      th.append(a);
      if (!c.ready) th.append(" ", text("span", "unreachable", "badge"));
      tr.append(th, text("td", c.kubernetesVersion || ""));
      for (const cell of c.cells) {
        const td = text("td", "", "cell " + (cell.state || "").toLowerCase());
        td.title = cell.reason || "";
        if (cell.link) {
          const link = text("a", cell.state);
          link.href = cell.link;
          td.append(link);
        } else {
          td.textContent = cell.state || "-";
        }
        tr.append(td);
      }
      rows.push(tr);
    }
    table.tBodies[0].replaceChildren(...rows);
    document.getElementById("total").textContent = grid.total;
    const to = document.getElementById("to");
    if (to) to.textContent = Math.min(grid.offset + grid.limit, grid.total);
  }
  async function poll() {
    const live = document.getElementById("live");
    try {
      const resp = await fetch("/api/v1/grid?" + params(), { cache: "no-store" });
      if (!resp.ok) throw new Error(resp.status);
      const body = await resp.text();
      // Cell states change without the fleet changing (an Application turning Degraded): compare the
      // whole window.
      if (body !== last) {
        last = body;
        draw(JSON.parse(body));
      }
      live.className = "live";
      live.textContent = "live";
    } catch (e) {
      live.className = "live stale";
      live.textContent = "not updating: " + e.message;
    }
  }
  function move(delta) {
    const offset = document.getElementById("offset");
    const limit = Number(document.getElementById("limit").value);
    offset.value = Math.max(0, Number(offset.value) + delta * limit);
    document.getElementById("filter").submit();
  }
  document.getElementById("prev").addEventListener("click", () => move(-1));
  document.getElementById("next").addEventListener("click", () => move(1));
  const to = document.getElementById("to");
  if (to) to.textContent = Math.min(Number(document.getElementById("offset").value) + Number(document.getElementById("limit").value), Number(document.getElementById("total").textContent));
  setInterval(poll, 2000);
})();
