from django.urls import include, path

from djsite import views

api = [
    path("items/<str:sku>/", views.item),
    path("fail/", views.fail),
    path("quotes/<str:sku>/", views.quote),
]

urlpatterns = [
    path("api/", include(api)),
    path("health", views.health),
]
