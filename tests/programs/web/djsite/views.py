from django.http import Http404, JsonResponse, HttpResponse

import catalog


def item(request, sku):
    try:
        return JsonResponse({"sku": sku, "price": catalog.price(sku)})
    except KeyError:
        raise Http404("no such item")


def fail(request):
    return HttpResponse(str(catalog.ratio(0)))


async def quote(request, sku):
    # an async view: run in the handler's event loop under ASGI, through async_to_sync
    # under WSGI
    return JsonResponse({"sku": sku, "price": catalog.price(sku)})


def health(request):
    return HttpResponse("ok")
