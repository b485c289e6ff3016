// graphdef serve: the page. Everything is computed by the server (/api/state, graphdef's own engine);
// this script keeps the page's state in the URL, asks for the state, and shows it: fields, the SVG
// drawing (elements found by their ids v:NAME and e:TAIL:HEAD:K), the step-by-step sweeps and the paths.
"use strict";
(() => {
  const $ = (selector) => document.querySelector(selector);
  const ui = { mode: "values", wrt: "", step: "0", page: 1, big: false, of: "" };
  let values = {};  // field name -> its text, as in the URL
  let data = null;  // the last good answer of /api/state
  let asked = 0;    // number of the newest request: older answers arriving late are dropped
  let typing = null;

  function readUrl() {
    for (const [name, value] of new URLSearchParams(location.search)) {
      if (name === "mode") ui.mode = value;
      else if (name === "wrt") ui.wrt = value;
      else if (name === "step") ui.step = value;
      else if (name === "page") ui.page = Number(value) || 1;
      else if (name === "big") ui.big = value === "1";
      else if (name === "of") ui.of = value;
      else values[name] = value;
    }
  }

  function query(forServer) {
    const q = new URLSearchParams();
    for (const [name, value] of Object.entries(values)) q.set(name, value);
    if (ui.of) q.set("of", ui.of);
    if (ui.mode !== "values") q.set("mode", ui.mode);
    if (ui.mode === "paths" && ui.wrt) q.set("wrt", ui.wrt);
    if (ui.mode === "paths" && ui.page > 1) q.set("page", String(ui.page));
    if (ui.mode === "step") q.set("step", String(ui.step));
    if (ui.big && !forServer) q.set("big", "1");
    return q.toString();
  }

  function writeUrl() {
    const q = query(false);
    history.replaceState(null, "", q ? `?${q}` : location.pathname);
  }

  async function refresh() {
    const mine = ++asked;
    let answer, ok;
    try {
      const response = await fetch(`/api/state?${query(true)}`, { cache: "no-store" });
      ok = response.ok;
      answer = await response.json();
    } catch (e) {
      ok = false;
      answer = { error: `the graphdef server does not answer (${e.message}); is \`graphdef serve\` still running?` };
    }
    if (mine !== asked) return;
    if (!ok) {
      showError(answer.error || "the server could not compute this");
      if (!data) await startFromDefaults(answer.error);
      return;
    }
    showError(null);
    data = answer;
    render();
    writeUrl();
  }

  async function startFromDefaults(message) {
    // a link with a bad value: draw the model at its default values, keep the bad text in its field to fix
    const response = await fetch("/api/state", { cache: "no-store" });
    if (!response.ok || data) return;
    data = await response.json();
    const given = { ...values };
    render();
    for (const [name, text] of Object.entries(given)) {
      const input = document.getElementById(`field-${name}`);
      if (input) input.value = text;
      values[name] = text;
    }
    showError(message);
  }

  function showError(message) {
    const box = $("#error");
    box.hidden = !message;
    box.textContent = message || "";
    if (message) document.body.dataset.errors = String(Number(document.body.dataset.errors || 0) + 1);
    $("#graph").classList.toggle("stale", Boolean(message));
    const bad = message ? (message.match(/^'?([^\s']+)'? must be /) || [])[1] : null;
    for (const input of document.querySelectorAll("#fields input")) {
      input.setAttribute("aria-invalid", String(input.name === bad));
    }
    if (message) writeUrl();
  }

  // -- drawing ------------------------------------------------------------------------------------

  function render() {
    document.title = `${data.model.name}: graphdef`;
    $("#model-name").textContent = data.model.name;
    $("#description").textContent = data.model.description || "";
    $("#grad-head").textContent = `∂${data.of}/∂vertex`;
    for (const span of document.querySelectorAll(".of-total")) span.textContent = `∂${data.of}/∂vertex`;
    renderFields();
    renderGraph();
    renderTables();
    renderMode();
    document.body.dataset.loads = String(Number(document.body.dataset.loads || 0) + 1);  // for tests: drawn
  }

  function renderFields() {
    const form = $("#fields");
    const names = data.fields.map((f) => f.name).join(",");
    if (form.dataset.names !== names) {
      form.dataset.names = names;
      form.replaceChildren();
      let kind = null;
      for (const f of data.fields) {
        if (f.kind !== kind) {
          kind = f.kind;
          const title = document.createElement("span");
          title.className = "group-title";
          title.textContent = kind === "input" ? "inputs" : "parameters";
          form.append(title);
        }
        const box = document.createElement("span");
        box.className = "field";
        const label = document.createElement("label");
        label.htmlFor = `field-${f.name}`;
        label.textContent = f.name;
        const input = document.createElement("input");
        input.id = `field-${f.name}`;
        input.name = f.name;
        input.dataset.kind = f.kind;
        if (f.scalar) {
          input.type = "number";
          input.step = "any";
          input.inputMode = "decimal";
        } else {
          input.type = "text";
          input.className = "wide";
          input.title = `a list of numbers, shape [${f.shape.join(", ")}]`;
        }
        input.addEventListener("input", () => edited(input, 350));
        input.addEventListener("change", () => edited(input, 0));
        box.append(label, input);
        form.append(box);
      }
    }
    for (const f of data.fields) {
      const input = document.getElementById(`field-${f.name}`);
      if (document.activeElement !== input) input.value = f.text;
      values[f.name] = input.value;
    }
  }

  function edited(input, delay) {
    values[input.name] = input.value.trim();
    clearTimeout(typing);
    typing = setTimeout(refresh, delay);
  }

  function renderGraph() {
    const graph = $("#graph");
    if (!data.svg) {
      graph.textContent = data.svg_error || "no drawing";
      return;
    }
    graph.innerHTML = data.svg;
    const svg = graph.querySelector("svg");
    const points = parseFloat(svg.getAttribute("width")) || 400;
    svg.setAttribute("width", String(Math.round(points * 4 / 3 * 1.3)));  // pt -> px, and larger
    svg.removeAttribute("height");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label",
      `the graph of ${data.model.name}: values, local derivatives and ∂${data.of}/∂vertex`);
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.append(td);
    return td;
  }

  function renderTables() {
    const names = new Map(data.vertices.map((v) => [v.name, v]));
    const shown = (name) => (names.get(name).kind === "literal" ? names.get(name).text : name);
    const body = $("#values tbody");
    body.replaceChildren();
    for (const v of data.vertices) {
      const row = document.createElement("tr");
      row.dataset.vertex = v.name;
      cell(row, v.name, "name");
      const what = v.op ? `${v.op}(${v.inputs.map(shown).join(", ")})` : (v.kind === "literal" ? "constant" : v.kind);
      cell(row, what, "op");
      cell(row, v.text, "num value");
      cell(row, v.grad_text ?? "—", "num grad");
      body.append(row);
    }
    const edges = $("#edges tbody");
    edges.replaceChildren();
    for (const e of data.edges) {
      const row = document.createElement("tr");
      row.dataset.edge = e.id;
      cell(row, `${e.partial}  (${shown(e.tail)} → ${e.head})`, "name");
      cell(row, e.text ?? "—", "num");
      edges.append(row);
    }
  }

  function renderMode() {
    for (const button of document.querySelectorAll("[data-mode]")) {
      button.setAttribute("aria-pressed", String(button.dataset.mode === ui.mode));
    }
    const paths = document.querySelector('[data-mode="paths"]');
    paths.title = data.scalar ? "every path from an input to the output, and its product" :
      "paths need a scalar graph: this model has tensors";
    paths.disabled = !data.scalar;
    $("#note").hidden = data.scalar;
    $("#note").textContent = data.scalar ? "" : "A model with tensors: vertices show shapes and norms, " +
      "not numbers; paths mode needs a graph of scalars.";
    $("aside").dataset.mode = ui.mode;
    $("aside").dataset.scalar = String(data.scalar);
    $("#values").classList.toggle("tensor", !data.scalar);
    $("#step-panel").hidden = ui.mode !== "step";
    $("#paths-panel").hidden = ui.mode !== "paths";
    clearHighlights("hl");
    clearHighlights("path");
    for (const row of document.querySelectorAll("#values tr")) {
      row.classList.remove("current", "pending", "pending-grad");
    }
    clearHighlights("pending");
    if (ui.mode === "step") showStep();
    if (ui.mode === "paths" && data.paths) renderPaths();
  }

  function clearHighlights(className) {
    for (const element of document.querySelectorAll(`#graph .${className}`)) element.classList.remove(className);
  }

  function highlight(ids, className) {
    for (const id of ids) {
      const element = document.getElementById(id);
      if (element) element.classList.add(className);
    }
  }

  // -- step mode ------------------------------------------------------------------------------------

  function showStep() {
    const steps = data.steps;
    let i = Math.max(0, Math.min(steps.length - 1, parseInt(ui.step, 10) || 0));
    ui.step = String(i);
    const step = steps[i];
    clearHighlights("hl");
    highlight(step.ids, "hl");
    $("#step-text").textContent = step.text;
    $("#step-phase").textContent = step.phase === "forward" ? "forward sweep" : "backward sweep";
    $("#step-count").textContent = `· step ${i + 1} of ${steps.length}`;
    $("#prev").disabled = i === 0;
    $("#next").disabled = i === steps.length - 1;
    const computed = new Set(), complete = new Set(), total = new Set();
    steps.forEach((s, j) => {
      for (const name of s.grad || []) total.add(name);
      if (j > i) return;
      for (const name of s.value || []) computed.add(name);
      for (const name of s.grad || []) complete.add(name);
    });
    for (const row of document.querySelectorAll("#values tbody tr")) {
      const name = row.dataset.vertex;
      row.classList.toggle("pending", !computed.has(name));
      row.classList.toggle("pending-grad", total.has(name) && !complete.has(name));
      row.classList.toggle("current", (step.value || step.grad || []).includes(name) ||
        (step.phase === "backward" && step.ids.includes(`v:${name}`)));
    }
    hideUncomputed(computed, complete, total);
  }

  // In the drawing too, a value appears when the forward sweep reaches its vertex and a total
  // ∂out/∂vertex when the backward sweep has crossed every edge out of it.
  function hideUncomputed(computed, complete, total) {
    for (const node of document.querySelectorAll('#graph g.node[id^="v:"]')) {
      const name = node.id.slice(2);
      for (const text of node.querySelectorAll("text")) {
        const line = text.textContent.trim();
        text.classList.toggle("pending", (line.startsWith("= ") && !computed.has(name)) ||
          (line.startsWith("∂") && total.has(name) && !complete.has(name)));
      }
    }
  }

  function goStep(i) {
    if (!data) return;
    ui.step = String(i);
    showStep();
    writeUrl();
  }

  // -- paths mode -----------------------------------------------------------------------------------

  function number(n) {
    return Number(n).toLocaleString("en-US");
  }

  function renderPaths() {
    const p = data.paths;
    const off = Boolean(p.disabled);
    $("#paths-disabled").hidden = !off;
    $("#paths-disabled").textContent = p.disabled || "";
    for (const id of ["#path-count", "#paths", "#path-sum", "#verdict", ".paths-choice"]) $(id).hidden = off;
    $("#cost").hidden = off || !data.cost;
    $("#pager").hidden = off || p.pages <= 1;
    if (off) return;
    const select = $("#wrt");
    select.replaceChildren(...data.wrt_all.map((name) => new Option(name, name, false, name === p.wrt)));
    ui.wrt = p.wrt;
    ui.page = p.page;
    $("#paths-to").textContent = `to ${p.of}`;
    const n = p.count;
    $("#path-count").textContent = `${number(n)} path${n === 1 ? "" : "s"} from ${p.wrt} to ${p.of}` +
      (p.too_many ? "" : n > p.listed.length ? `; paths ${number(p.first + 1)}–${number(p.first + p.listed.length)}` +
        " below" : "");
    const list = $("#paths");
    list.replaceChildren();
    list.start = p.first + 1;
    for (const path of p.listed) {
      const item = document.createElement("li");
      item.tabIndex = 0;
      const route = document.createElement("span");
      route.className = "route";
      route.textContent = path.vertices.join(" → ");
      const factors = document.createElement("span");
      const long = path.edges.length > 4;  // a long path: its numbers on a line of their own, no symbols
      factors.className = long ? "factors long" : "factors";
      factors.textContent = long ? `${path.numbers} = ` : `: ${path.symbols} = ${path.numbers} = `;
      const product = document.createElement("span");
      product.className = "product";
      product.textContent = path.text;
      item.append(route, factors, product);
      const ids = [...path.edges, ...path.vertices.map((v) => `v:${v}`)];
      const on = () => { clearHighlights("path"); highlight(ids, "path"); };
      item.dataset.ids = ids.join(" ");
      const off = () => {  // the mouse leaves: back to the path that has the keyboard focus, if any
        clearHighlights("path");
        const focused = document.activeElement;
        if (focused !== item && focused?.dataset?.ids && list.contains(focused)) {
          highlight(focused.dataset.ids.split(" "), "path");
        }
      };
      item.addEventListener("mouseenter", on);
      item.addEventListener("focus", on);
      item.addEventListener("mouseleave", off);
      item.addEventListener("blur", off);
      list.append(item);
    }
    $("#page-info").textContent = `page ${p.page} of ${p.pages}`;
    $("#page-prev").disabled = p.page <= 1;
    $("#page-next").disabled = p.page >= p.pages;
    const d = `∂${p.of}/∂${p.wrt}`;
    if (p.too_many) {
      $("#path-sum").textContent = `${p.too_many} ${d} = ${p.gradient_text} (backward sweep)`;
    } else if (n === 0) {
      $("#path-sum").textContent = `no path: ${d} = 0`;
    } else {
      const terms = p.listed.length === n ? p.listed.map((x) => x.text).join(" + ")
        : `the sum of all ${number(n)} products`;
      $("#path-sum").textContent = `${d} = ${terms} = ${p.sum_text}` +
        `  (the backward sweep gives ${p.gradient_text})`;
    }
    if (data.cost) {
      $("#cost-caption").textContent =
        `Work for ∂${p.of}/∂(${data.cost.wrt.join(", ")}), counted on the scalar graph`;
      const body = $("#cost tbody");
      body.replaceChildren();
      for (const r of data.cost.rows) {
        const row = document.createElement("tr");
        row.dataset.method = r.method;
        cell(row, r.method, "name");
        cell(row, r.passes);
        cell(row, number(r.multiplications), "num");
        cell(row, number(r.additions), "num");
        body.append(row);
      }
      $("#verdict").textContent = data.cost.verdict;
    }
  }

  // -- controls ---------------------------------------------------------------------------------------

  function setMode(mode) {
    if (mode === ui.mode) return;
    ui.mode = mode;
    ui.page = 1;
    if (mode === "step") ui.step = "0";
    refresh();
  }

  function setBig(big) {
    ui.big = big;
    document.documentElement.classList.toggle("big", big);
    $("#big").setAttribute("aria-pressed", String(big));
  }

  for (const button of document.querySelectorAll("[data-mode]")) {
    button.addEventListener("click", () => setMode(button.dataset.mode));
  }
  $("#big").addEventListener("click", () => { setBig(!ui.big); writeUrl(); });
  $("#prev").addEventListener("click", () => goStep(Number(ui.step) - 1));
  $("#next").addEventListener("click", () => goStep(Number(ui.step) + 1));
  $("#reset").addEventListener("click", () => goStep(0));
  $("#wrt").addEventListener("change", () => { ui.wrt = $("#wrt").value; ui.page = 1; refresh(); });
  $("#page-prev").addEventListener("click", () => { ui.page -= 1; refresh(); });
  $("#page-next").addEventListener("click", () => { ui.page += 1; refresh(); });
  $("#fields").addEventListener("submit", (event) => { event.preventDefault(); clearTimeout(typing); refresh(); });
  document.addEventListener("keydown", (event) => {
    const tag = event.target.tagName;
    if (ui.mode !== "step" || tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const moves = { ArrowRight: 1, ArrowLeft: -1 };
    if (event.key in moves) goStep(Number(ui.step) + moves[event.key]);
    else if (event.key === "Home") goStep(0);
    else return;
    event.preventDefault();
  });

  readUrl();
  setBig(ui.big);
  refresh();
})();
