"""The StopNCII-compatible API (DESIGN.md section 5), under /api/compat/stopncii/v1/.

The paths are StopNCII's endpoint names, which python-threatexchange appends to its base URL.
"""

from django.urls import path

from partners.compat import views

app_name = "stopncii"

urlpatterns = [
    path("FetchHashes", views.StopNCIIHashesFetchApi.as_view(), name="fetch-hashes"),
    path("SubmitFeedback", views.StopNCIIFeedbackSubmitApi.as_view(), name="submit-feedback"),
]
