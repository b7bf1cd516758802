// Keyboard shortcuts for the labelling form. Every control that has one carries it in data-key; this script only
// clicks or checks that control, so the page works the same without it (buttons and a text field).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("judge");
  if (!form) return;
  const order = form.querySelector("input[data-ranking]");
  const reason = form.querySelector("textarea[name=reason]");
  let sent = false;  // one submission per page: a held-down key must not post twice
  const submitWith = (button) => {
    if (sent) return;
    sent = true;
    form.requestSubmit(button);
  };
  form.addEventListener("submit", () => { sent = true; });

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const typing = event.target === reason || (event.target.tagName === "INPUT" && event.target !== order);
    if (typing) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (event.key === "r" || event.key === "R") {
      event.preventDefault();
      reason.focus();
      return;
    }
    if (order) {  // ranking: digits append a response number, Backspace removes the last, Enter submits
      const count = Number(order.dataset.ranking);
      const numbers = order.value.split(/[\s,]+/).filter(Boolean);
      if (/^[1-9]$/.test(event.key)) {
        event.preventDefault();
        if (Number(event.key) <= count && !numbers.includes(event.key)) numbers.push(event.key);
        order.value = numbers.join(" ");
        return;
      }
      if (event.key === "Backspace") {
        event.preventDefault();
        numbers.pop();
        order.value = numbers.join(" ");
        return;
      }
    }
    const control = form.querySelector(`[data-key="${CSS.escape(event.key.length === 1 ? event.key.toLowerCase() : event.key)}"]`);
    if (!control) return;
    event.preventDefault();
    if (control.type === "radio") control.checked = true;
    else submitWith(control);
  });
});
