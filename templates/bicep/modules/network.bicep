// The virtual network of one environment: a subnet delegated to App Service for VNet
// integration (outbound traffic of the app to PostgreSQL, Storage and Key Vault), a subnet
// for private endpoints, and a subnet for the ops runner (backups, migrations, restores,
// health checks run from inside the network once everything is private). Private DNS
// zones linked to the VNet resolve the services' usual host names to private addresses.

@description('Azure region.')
param location string

@description('Tags shared by every resource.')
param tags object

@description('Virtual network name.')
param vnetName string

@description('Address space of the virtual network (a /16 or /20 is plenty).')
param addressPrefix string

@description('Subnet prefixes inside addressPrefix: app (a /26 or larger), endpoints, ops.')
param subnetPrefixes object

var appSubnetPrefix = subnetPrefixes.app
var endpointSubnetPrefix = subnetPrefixes.endpoints
var opsSubnetPrefix = subnetPrefixes.ops
var zoneNames = {
  postgres: 'privatelink.postgres.database.azure.com'
  blob: 'privatelink.blob.${environment().suffixes.storage}'
  vault: 'privatelink.vaultcore.azure.net'
}
var zoneList = [
  zoneNames.postgres
  zoneNames.blob
  zoneNames.vault
]

resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' = {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: 'app'
        properties: {
          addressPrefix: appSubnetPrefix
          networkSecurityGroup: {
            id: nsg.id
          }
          delegations: [
            {
              name: 'app-service'
              properties: {
                serviceName: 'Microsoft.Web/serverFarms'
              }
            }
          ]
        }
      }
      {
        name: 'endpoints'
        properties: {
          addressPrefix: endpointSubnetPrefix
          networkSecurityGroup: {
            id: nsg.id
          }
          privateEndpointNetworkPolicies: 'Enabled'
        }
      }
      {
        name: 'ops'
        properties: {
          addressPrefix: opsSubnetPrefix
          networkSecurityGroup: {
            id: nsg.id
          }
        }
      }
    ]
  }
}

// No inbound rule beyond Azure's defaults (VNet-internal and the load balancer): nothing in
// these subnets is reachable from the internet.
resource nsg 'Microsoft.Network/networkSecurityGroups@2023-11-01' = {
  name: '${vnetName}-nsg'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource zones 'Microsoft.Network/privateDnsZones@2020-06-01' = [for zone in zoneList: {
  name: zone
  location: 'global'
  tags: tags
}]

resource links 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = [for (zone, i) in zoneList: {
  parent: zones[i]
  name: '${vnetName}-link'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}]

@description('Subnet for App Service VNet integration.')
output appSubnetId string = '${vnet.id}/subnets/app'

@description('Subnet holding the private endpoints.')
output endpointSubnetId string = '${vnet.id}/subnets/endpoints'

@description('Subnet for the ops runner (backups, migrations, restores).')
output opsSubnetId string = '${vnet.id}/subnets/ops'

@description('Private DNS zone id for PostgreSQL endpoints.')
output postgresZoneId string = resourceId('Microsoft.Network/privateDnsZones', zoneNames.postgres)

@description('Private DNS zone id for Blob Storage endpoints.')
output blobZoneId string = resourceId('Microsoft.Network/privateDnsZones', zoneNames.blob)

@description('Private DNS zone id for Key Vault endpoints.')
output vaultZoneId string = resourceId('Microsoft.Network/privateDnsZones', zoneNames.vault)
