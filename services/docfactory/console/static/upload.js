/* docfactory console: the "new dossier" form's files (drag and drop, several at once) and its
   upload progress bar (XMLHttpRequest upload events). No framework; without JavaScript the form
   posts as a plain multipart form and the server answers with a page. */
(function () {
  "use strict";
  var form = document.getElementById("new-dossier");
  if (!form || !window.FormData || !window.XMLHttpRequest) { return; }
  var input = document.getElementById("files");
  var zone = document.getElementById("dropzone");
  var list = document.getElementById("file-list");
  var box = document.getElementById("upload");
  var bar = document.getElementById("upload-progress");
  var status = document.getElementById("upload-status");
  var error = document.getElementById("form-error");
  var button = document.getElementById("create-button");
  var maxBytes = parseInt(form.getAttribute("data-max-bytes"), 10) || 0;
  var maxFiles = parseInt(form.getAttribute("data-max-files"), 10) || 0;
  var chosen = [];

  function msg(name) { return form.getAttribute("data-msg-" + name) || ""; }

  function showError(text) {
    error.textContent = text;
    error.hidden = !text;
    if (text) { error.setAttribute("tabindex", "-1"); error.focus(); }
  }

  var units = document.documentElement.lang === "fr" ? ["o", "Ko", "Mo"] : ["B", "KB", "MB"];

  function size(n) {
    if (n < 1024) { return n + " " + units[0]; }
    if (n < 1024 * 1024) { return (n / 1024).toFixed(0) + " " + units[1]; }
    return (n / 1024 / 1024).toFixed(1) + " " + units[2];
  }

  function total() {
    return chosen.reduce(function (sum, f) { return sum + f.size; }, 0);
  }

  function render() {
    list.textContent = "";
    chosen.forEach(function (file, i) {
      var li = document.createElement("li");
      li.setAttribute("data-file", file.name);
      li.appendChild(document.createTextNode(file.name + " (" + size(file.size) + ") "));
      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "link";
      remove.textContent = msg("remove");
      remove.setAttribute("aria-label", msg("remove") + " " + file.name);
      remove.addEventListener("click", function () { chosen.splice(i, 1); render(); });
      li.appendChild(remove);
      list.appendChild(li);
    });
    form.setAttribute("data-files", String(chosen.length));
    if (maxBytes && total() > maxBytes) { showError(msg("too-large")); }
    else if (maxFiles && chosen.length > maxFiles) { showError(msg("too-many")); }
    else { showError(""); }
  }

  function add(files) {
    for (var i = 0; i < files.length; i++) {
      var f = files[i];
      var known = chosen.some(function (c) { return c.name === f.name && c.size === f.size; });
      if (!known) { chosen.push(f); }
    }
    render();
  }

  input.addEventListener("change", function () {
    add(input.files);
    input.value = "";  // the list above holds them; the same file may be chosen again
  });
  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (e) {
      e.preventDefault();
      zone.classList.add("over");
    });
  });
  ["dragleave", "dragend"].forEach(function (type) {
    zone.addEventListener(type, function () { zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (e) {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files) { add(e.dataTransfer.files); }
  });

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    if (!chosen.length) { showError(msg("no-file")); return; }
    if (maxBytes && total() > maxBytes) { showError(msg("too-large")); return; }
    if (maxFiles && chosen.length > maxFiles) { showError(msg("too-many")); return; }
    showError("");
    var data = new FormData(form);
    data.delete("files");
    chosen.forEach(function (f) { data.append("files", f, f.name); });
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.getAttribute("action"));
    xhr.setRequestHeader("X-Docfactory-Upload", "1");
    xhr.responseType = "json";
    box.hidden = false;
    bar.value = 0;
    status.textContent = msg("sending");
    button.disabled = true;
    xhr.upload.addEventListener("progress", function (ev) {
      if (ev.lengthComputable && ev.total) {
        bar.value = Math.round((ev.loaded / ev.total) * 100);
        form.setAttribute("data-progress", String(bar.value));
      }
    });
    xhr.upload.addEventListener("load", function () {
      bar.value = 100;
      form.setAttribute("data-progress", "100");
      bar.removeAttribute("value");  // indeterminate: the server reads the documents
      status.textContent = msg("processing");
    });
    xhr.addEventListener("load", function () {
      var body = xhr.response || {};
      if (xhr.status < 400 && body.redirect) {
        window.location.assign(body.redirect);
        return;
      }
      box.hidden = true;
      button.disabled = false;
      showError(body.error || msg("failed"));
    });
    xhr.addEventListener("error", function () {
      box.hidden = true;
      button.disabled = false;
      showError(msg("failed"));
    });
    xhr.send(data);
  });
}());
