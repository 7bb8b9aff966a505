from django.urls import path

from hashlists.api import lookup, views

app_name = "partner-api"

urlpatterns = [
    path("lists/", views.HashListListApi.as_view(), name="list-list"),
    path("lists/<slug:slug>/changes", views.ListChangesApi.as_view(), name="list-changes"),
    path("lists/<slug:slug>/snapshot", views.SnapshotApi.as_view(), name="snapshot"),
    path(
        "lists/<slug:slug>/snapshot/download",
        views.SnapshotDownloadApi.as_view(),
        name="snapshot-download",
    ),
    path("keys", views.SigningKeysApi.as_view(), name="signing-keys"),
    path("lookup", lookup.HashLookupApi.as_view(), name="lookup"),
]
