// Small DOM helpers shared by the views: no framework, just elements.

/** `h('button', { class: 'x', onclick }, 'Label', child)`: an element with attributes,
 * listeners (`on…` functions) and children (strings or nodes; null and false are skipped). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (value === true) {
      element.setAttribute(name, '');
    } else {
      element.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** Prices are integer cents. */
export function money(cents) {
  return `$${(cents / 100).toFixed(2)}`;
}

/** "12 s", "4 min", "2 h": how long ago `millis` was. */
export function age(millis, now = Date.now()) {
  const seconds = Math.max(0, Math.round((now - millis) / 1000));
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  return `${Math.floor(seconds / 3600)} h`;
}

/** "just now" / "3 min ago" / "never". */
export function ago(millis) {
  if (!millis) return 'never';
  const text = age(millis);
  return text === '0 s' ? 'just now' : `${text} ago`;
}

/** Shows a message for a few seconds (errors carry their stable code). */
export function toast(message) {
  const element = document.getElementById('toast');
  element.textContent = message;
  element.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { element.hidden = true; }, 5000);
}

/** Runs `action`; a failure is shown, not lost. */
export async function attempt(action) {
  try {
    return await action();
  } catch (error) {
    toast(`${error.message}${error.code ? ` (${error.code})` : ''}`);
    console.error(error);
    return undefined;
  }
}
