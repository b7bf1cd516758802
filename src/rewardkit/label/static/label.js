// Keyboard shortcuts for the labelling form. Every control that has one carries it in data-key; this script only
// clicks or checks that control, so the page works the same without it (buttons and a text field).
//
// Pairs: the strength (1-3) may come before or after A / B. Chosen first, A or B submits at once. Otherwise A or B
// waits form.dataset.strengthWait milliseconds, with the choice and a countdown shown (#pending): 1-3 (or a click
// on a strength) then submits with that strength; Enter, "Submit now" or the same choice again submits at once; the
// other choice restarts the wait; Esc or "Cancel" takes the choice back. The countdown pauses while the reason is
// being typed, or once the pointer moves onto the strengths or the countdown (until it leaves them). A tie takes no
// strength: any is cleared.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("judge");
  if (!form) return;
  const order = form.querySelector("input[data-ranking]");
  const reason = form.querySelector("textarea[name=reason]");
  const radios = Array.from(form.querySelectorAll("input[name=strength]"));
  const panel = document.getElementById("pending");
  const waitMs = radios.length && panel ? Math.max(0, Number(form.dataset.strengthWait) || 0) : 0;
  let sent = false;  // one submission per page: a held-down key must not post twice
  let confirming = false;  // the next submit event is the pending choice, confirmed
  let strengthChosen = false;  // on this page: a strength shown from an earlier judgment (revising) does not count
  let pending = null;  // {button, left (ms), last (timestamp), timer, pointer: the pointer moved onto the controls}

  const submitWith = (button) => {
    if (!sent) form.requestSubmit(button);
  };

  // ------------------------------------------------------------------------------------ the choice waiting for a strength
  const choiceText = (button) => Array.from(button.childNodes).filter((n) => n.nodeType === Node.TEXT_NODE)
    .map((n) => n.textContent).join("").trim();
  const paused = () => pending.pointer || document.activeElement === reason;
  const show = () => {
    const seconds = Math.max(0, pending.left) / 1000;
    document.getElementById("pending-seconds").textContent = paused() ? "– (paused)" : seconds.toFixed(1);
    document.getElementById("pending-bar").value = Math.max(0, pending.left) / waitMs;
  };
  const tick = () => {
    const now = performance.now();
    if (!paused()) pending.left -= now - pending.last;
    pending.last = now;
    if (pending.left <= 0) confirm();
    else show();
  };
  const cancel = () => {
    if (!pending) return;
    clearInterval(pending.timer);
    pending.button.classList.remove("pending-choice");
    pending = null;
    panel.hidden = true;
  };
  const start = (button) => {
    cancel();
    pending = {button, left: waitMs, last: performance.now(), timer: setInterval(tick, 50), pointer: false};
    button.classList.add("pending-choice");
    document.getElementById("pending-choice").textContent = choiceText(button);
    panel.hidden = false;
    show();
  };
  const confirm = () => {
    if (!pending || sent) return;
    const button = pending.button;
    clearInterval(pending.timer);
    confirming = true;
    form.requestSubmit(button);
  };
  const chooseStrength = (radio) => {
    radio.checked = true;
    strengthChosen = true;
    if (pending) confirm();
  };

  form.addEventListener("submit", (event) => {
    const button = event.submitter;
    if (sent) {
      event.preventDefault();
      return;
    }
    if (button && button.name === "choice" && radios.length && !confirming) {
      if (button.value === "tie") {
        radios.forEach((radio) => { radio.checked = false; });
      } else if (waitMs > 0 && !strengthChosen && !(pending && pending.button === button)) {
        event.preventDefault();  // wait for a strength
        start(button);
        return;
      }
    }
    if (pending) clearInterval(pending.timer);
    sent = true;
  });
  radios.forEach((radio) => radio.addEventListener("click", () => chooseStrength(radio)));
  if (panel) {
    document.getElementById("pending-now").addEventListener("click", confirm);
    document.getElementById("pending-cancel").addEventListener("click", cancel);
    // a pointer moved onto the strengths or the countdown is on its way to click one: wait for it
    for (const area of [panel, form.querySelector("fieldset.strength")]) {
      area.addEventListener("pointermove", () => { if (pending) pending.pointer = true; });
      area.addEventListener("pointerleave", () => { if (pending) pending.pointer = false; });
    }
  }

  // ------------------------------------------------------------------------------------------------------------ keys
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const typing = event.target === reason
      || (event.target.tagName === "INPUT" && event.target !== order && event.target.type !== "radio");
    if (typing) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (event.repeat) {  // a key held down acts once
      event.preventDefault();
      return;
    }
    if (event.key === "r" || event.key === "R") {
      event.preventDefault();
      reason.focus();
      return;
    }
    if (pending && (event.key === "Enter" || event.key === "Escape")) {
      event.preventDefault();
      if (event.key === "Enter") confirm();
      else cancel();
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
    if (control.type === "radio") chooseStrength(control);
    else submitWith(control);
  });
});
