from django.http import Http404, JsonResponse, HttpResponse

import catalog


def item(request, sku):
    try:
        return JsonResponse({"sku": sku, "price": catalog.price(sku)})
    except KeyError:
        raise Http404("no such item")


def fail(request):
    return HttpResponse(str(catalog.ratio(0)))


def health(request):
    return HttpResponse("ok")
