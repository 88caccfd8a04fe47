// Asks before the actions that cannot be undone. The console works without it: a button
// without this script simply does what it says.
document.addEventListener("submit", (event) => {
  const question = event.target.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
