// mailgate admin UI: the one behaviour htmx does not cover. A form or submit button with
// data-confirm asks before it is sent (deletes, revokes). No inline script anywhere.
document.addEventListener("submit", function (event) {
  var source = event.submitter && event.submitter.getAttribute("data-confirm") ? event.submitter : event.target;
  var question = source.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
}, true);
