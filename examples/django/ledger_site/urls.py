from django.urls import path
from ledger import views

urlpatterns = [path("", views.index), path("healthz", views.healthz)]
