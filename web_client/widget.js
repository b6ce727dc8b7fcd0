// Embeddable chat widget: a firm's page adds
//   <script src="https://HUB/static/widget.js" defer></script>
// and gets a floating button that opens the investor chat (/?embed=1) in an iframe.
(function () {
  "use strict";
  if (window.__chatWidgetLoaded) return;
  window.__chatWidgetLoaded = true;
  var script = document.currentScript;
  var origin = script && script.src ? new URL(script.src).origin : window.location.origin;
  // Escaped so the label survives a host page that is not UTF-8 (scripts take its charset).
  var label = (script && script.getAttribute("data-label")) || "\u5728\u7ebf\u54a8\u8be2";

  function mount() {
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    button.setAttribute("aria-expanded", "false");
    button.className = "chat-widget-button";
    var bs = button.style;
    bs.position = "fixed";
    bs.right = "20px";
    bs.bottom = "20px";
    bs.zIndex = "2147483000";
    bs.padding = "12px 18px";
    bs.border = "0";
    bs.borderRadius = "24px";
    bs.background = "#c62f2f";
    bs.color = "#fff";
    bs.font = "15px/1.2 system-ui, -apple-system, 'PingFang SC', 'Microsoft YaHei', sans-serif";
    bs.boxShadow = "0 4px 14px rgba(0,0,0,.25)";
    bs.cursor = "pointer";

    var frame = null;
    button.addEventListener("click", function () {
      if (!frame) {
        frame = document.createElement("iframe");
        frame.src = origin + "/?embed=1";
        frame.title = label;
        frame.className = "chat-widget-frame";
        var fs = frame.style;
        fs.position = "fixed";
        fs.right = "20px";
        fs.bottom = "76px";
        fs.width = "min(380px, calc(100vw - 40px))";
        fs.height = "min(600px, calc(100vh - 100px))";
        fs.border = "1px solid #ddd";
        fs.borderRadius = "12px";
        fs.boxShadow = "0 8px 28px rgba(0,0,0,.25)";
        fs.background = "#fff";
        fs.zIndex = "2147483000";
        document.body.appendChild(frame);
        button.setAttribute("aria-expanded", "true");
        return;
      }
      var open = frame.style.display !== "none";
      frame.style.display = open ? "none" : "block";
      button.setAttribute("aria-expanded", open ? "false" : "true");
    });
    document.body.appendChild(button);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mount);
  else mount();
})();
